"""The C fast path (``_fastpath.c``) for runs of plain GET/SET/INCR and for MGET, if built.

The extension is optional (setup.py): without a C compiler, or with the environment variable
``PREDIS_NATIVE=no``, ``native`` is None and the same commands run in Python
(pipeline.py, commands/strings.py), with the same replies and the same store state; the
tests run both. It only reads and writes the store's host layout (``native_view`` in
gpu/cpu.py) and stops before any command it cannot do exactly as the Python path would.
"""
from __future__ import annotations

import os
from typing import Any

from .protocol.encoder import NULL3, NULL_BULK
from .replies import Raw

try:
    from . import _fastpath as native
except ImportError:  # built without a compiler: the Python path
    native = None
try:  # a connection's reads into hiredis and the lone batch's writes (_netpath.c)
    from . import _netpath as net
except ImportError:
    net = None

if os.environ.get("PREDIS_NATIVE", "yes").strip().lower() in ("0", "no", "off", "false"):
    native = net = None
if native is not None:  # the stores tell the C side when a view it keeps open goes out of use
    import gpu.cpu

    gpu.cpu.forget_native_view = native.forget_view


def mget_reply(client: Any, argv: list[bytes]) -> Raw | None:
    """MGET's encoded reply from the C path, with hits and misses counted; None where the
    Python path must answer (no extension, LFU tracking, an expired key among them)."""
    if native is None:
        return None
    store = client.db.store
    view = store.native_view()
    if view is None:
        return None
    ks = client.db.keyspace
    done = native.mget(argv, view, ks.now_ms or ks.source_clock(), not ks.no_touch,
                       NULL3 if client.resp == 3 else NULL_BULK)
    if done is None:
        return None
    reply, hits, misses = done
    ks.stats.keyspace_hits += hits
    ks.stats.keyspace_misses += misses
    return Raw(reply)
