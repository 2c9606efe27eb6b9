"""Redis's glob-style patterns (``stringmatchlen``) for KEYS, SCAN MATCH, PSUBSCRIBE, CONFIG GET."""
from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1024)
def compile_pattern(pattern: bytes, nocase: bool = False) -> re.Pattern[bytes]:
    out = bytearray()
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i:i + 1]
        if c == b"*":
            out += b".*"
        elif c == b"?":
            out += b"."
        elif c == b"\\" and i + 1 < n:
            i += 1
            out += re.escape(pattern[i:i + 1])
        elif c == b"[":
            end = i + 1
            if end < n and pattern[end:end + 1] == b"^":
                end += 1
            # find the closing bracket, honouring escapes
            j = end
            while j < n and pattern[j:j + 1] != b"]":
                j += 2 if pattern[j:j + 1] == b"\\" else 1
            if j >= n:
                # Redis matches an unterminated class against the rest as if closed at the end
                j = n
            body = pattern[i + 1:j]
            negate = body.startswith(b"^")
            if negate:
                body = body[1:]
            out += b"[^" if negate else b"["
            k = 0
            while k < len(body):
                ch = body[k:k + 1]
                if ch == b"\\" and k + 1 < len(body):
                    k += 1
                    out += re.escape(body[k:k + 1])
                elif k + 2 < len(body) and body[k + 1:k + 2] == b"-":
                    lo, hi = body[k], body[k + 2]
                    if lo > hi:
                        lo, hi = hi, lo
                    out += re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi]))
                    k += 2
                else:
                    out += re.escape(ch)
                k += 1
            if not body:
                out += b"^\\x00-\\xff" if not negate else b"\\x00-\\xff"
            out += b"]"
            i = j
        else:
            out += re.escape(c)
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if nocase else 0)
    return re.compile(bytes(out) + b"\\Z", flags)


def glob_match(pattern: bytes, subject: bytes, nocase: bool = False) -> bool:
    if pattern == b"*":
        return True
    return compile_pattern(pattern, nocase).match(subject) is not None
