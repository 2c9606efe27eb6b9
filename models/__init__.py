"""Learning the clients' access patterns: collector, candidates, features, ranker, prefetch, training."""
