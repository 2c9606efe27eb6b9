"""Predis's measuring stick: workload generators, trace readers, replay against a live
server, and libCacheSim baselines. Talks to servers only through redis-py; never imports the
server's internals."""
