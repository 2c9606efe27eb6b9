"""TLS for Predis: SSL contexts built from the tls-* options, reloaded on CONFIG SET."""
from .context import TLSAcceptor, TLSContextHolder, build_server_context

__all__ = ["TLSAcceptor", "TLSContextHolder", "build_server_context"]
