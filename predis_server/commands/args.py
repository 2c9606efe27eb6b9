"""Argument parsing shared by the families, with Redis's rules (string2ll, strtold, ...)."""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import errors
from ..errors import CommandError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_LONG_DOUBLE_CHARS = 5 * 1024


def parse_int(arg: bytes, message: str = errors.NOT_INTEGER) -> int:
    """string2ll: optional '-', digits, no '+', no spaces, no leading zeros, within int64."""
    if len(arg) > 20:
        raise CommandError(message)
    try:
        value = int(arg)
    except ValueError:
        raise CommandError(message) from None
    # int() also takes spaces, '+', '_' and leading zeros; only the canonical form is an integer
    if b"%d" % value != arg or value < INT64_MIN or value > INT64_MAX:
        raise CommandError(message)
    return value


def try_int(arg: bytes) -> int | None:
    try:
        return parse_int(arg)
    except CommandError:
        return None


def parse_float(arg: bytes, message: str = errors.NOT_FLOAT) -> float:
    """strtod as Redis uses it: no surrounding spaces, no NaN; 'inf' allowed."""
    if not arg or arg[:1].isspace() or arg[-1:].isspace():
        raise CommandError(message)
    try:
        value = float(arg)
    except ValueError:
        raise CommandError(message) from None
    if math.isnan(value) or b"_" in arg:
        raise CommandError(message)
    return value


def parse_long_double(arg: bytes, message: str = errors.NOT_FLOAT) -> np.longdouble:
    """string2ld: strtold (hex floats and exponents past double's range included), the whole
    argument consumed, no leading space, no NaN, and ERANGE (overflow to HUGE_VAL or underflow
    to zero) rejected. Redis keeps INCRBYFLOAT values as long double (x87 80-bit here)."""
    if (not arg or len(arg) >= MAX_LONG_DOUBLE_CHARS or arg[:1].isspace() or arg[-1:].isspace()
            or b"_" in arg or b"\0" in arg):
        raise CommandError(message)
    try:
        text = arg.decode("ascii")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # ERANGE; judged below as Redis does
            value = np.longdouble(text)  # NumPy parses with the C library's strtold
    except (ValueError, UnicodeDecodeError):
        raise CommandError(message) from None
    if np.isnan(value):
        raise CommandError(message)
    body = text.lstrip("+-").lower()
    if np.isinf(value) and body not in ("inf", "infinity"):
        raise CommandError(message)  # overflow: strtold returned HUGE_VAL with ERANGE
    if value == 0:
        if body.startswith("0x"):
            mantissa, nonzero = body[2:].split("p")[0], "123456789abcdef"
        else:
            mantissa, nonzero = body.split("e")[0], "123456789"
        if any(c in nonzero for c in mantissa):
            raise CommandError(message)  # underflow to zero: ERANGE
    return value


def format_long_double(value: np.longdouble) -> bytes:
    """ld2string(LD_STR_HUMAN): "%.17Lf" with trailing zeros and point removed."""
    text = np.format_float_positional(value, precision=17, unique=False, fractional=True, trim="-")
    if text == "-0":
        text = "0"
    return text.encode()


def format_double(value: float) -> bytes:
    """Like Redis's %.17g replies (e.g. for doubles sent as bulk strings)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value


def parse_timeout_ms(arg: bytes, unit_ms: int) -> int:
    value = parse_int(arg)
    return value * unit_ms


def upper(arg: bytes) -> bytes:
    return arg.upper()
