"""``file:///dir``: one file per key; the file's bytes are the value.

Key -> file name: bytes outside ``[A-Za-z0-9_-]`` are written ``%XX`` (so ``/``, ``..``,
NUL and the like can never escape the directory), and names too long for the filesystem
become ``~`` + their SHA-256, so every key maps to exactly one file inside ``dir``.
"""
from __future__ import annotations

import hashlib
import os
from urllib.parse import SplitResult

from .base import Origin, OriginError

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_MAX_NAME = 200


def key_to_filename(key: bytes) -> str:
    """A safe, reversible (below 200 bytes) file name for ``key``."""
    name = "".join(chr(b) if b in _SAFE else "%%%02X" % b for b in key)
    if not name:
        name = "%"  # the empty key
    if len(name) > _MAX_NAME:
        name = "~" + hashlib.sha256(key).hexdigest()
    return name


class FileOrigin(Origin):
    blocking = True

    def __init__(self, parts: SplitResult) -> None:
        self.directory = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not self.directory:
            raise ValueError("file origin needs a directory: file:///path/to/dir")
        os.makedirs(self.directory, exist_ok=True)

    def path_of(self, key: bytes) -> str:
        return os.path.join(self.directory, key_to_filename(key))

    def get(self, key: bytes) -> bytes | None:
        try:
            with open(self.path_of(key), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OriginError(f"file: {exc.strerror or exc}") from exc
