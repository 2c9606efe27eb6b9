"""Every error string the server sends, with Redis 7's exact prefixes and wording.

Clients such as redis-py map the first word (ERR, WRONGTYPE, NOAUTH, ...) to exception
classes, so the text must match Redis byte for byte.
"""
from __future__ import annotations


class CommandError(Exception):
    """Raised by a handler or storage operation; the message is the full error line (no '-')."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def prefix(self) -> str:
        return self.message.split(" ", 1)[0]


class ProtocolError(Exception):
    """Malformed request bytes: the client gets ``-ERR Protocol error: ...`` and is closed."""


# Generic
SYNTAX = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
OVERFLOW = "ERR increment or decrement would overflow"
NAN_OR_INF = "ERR increment would produce NaN or Infinity"
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NO_SUCH_KEY = "ERR no such key"
DB_INDEX_OUT_OF_RANGE = "ERR DB index is out of range"
STRING_TOO_LONG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
OFFSET_OUT_OF_RANGE = "ERR offset is out of range"
BIT_OFFSET = "ERR bit offset is not an integer or out of range"
INVALID_CURSOR = "ERR invalid cursor"
SAME_OBJECT = "ERR source and destination objects are the same"
TIMEOUT_NEGATIVE = "ERR timeout is negative"
OOM = "OOM command not allowed when used memory > 'maxmemory'."

# Hashes
HASH_NOT_INTEGER = "ERR hash value is not an integer"
HASH_NOT_FLOAT = "ERR hash value is not a float"

# Transactions
MULTI_NESTED = "ERR MULTI calls can not be nested"
EXEC_WITHOUT_MULTI = "ERR EXEC without MULTI"
DISCARD_WITHOUT_MULTI = "ERR DISCARD without MULTI"
WATCH_IN_MULTI = "ERR WATCH inside MULTI is not allowed"
EXECABORT = "EXECABORT Transaction discarded because of previous errors."

# Connection and auth
NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
AUTH_NOT_CONFIGURED = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
NOPROTO = "NOPROTO unsupported protocol version"
MAX_CLIENTS = "ERR max number of clients reached"
CLIENT_NO_SUCH = "ERR No such client"
CLIENT_NAME_SPACES = "ERR Client names cannot contain spaces, newlines or special characters."

# Pub/sub
PUBSUB_CONTEXT = (
    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
    "are allowed in this context"
)

# Config
CONFIG_UNKNOWN = "ERR Unknown option or number of arguments for CONFIG SET - '{}'"
CONFIG_SET_FAILED = "ERR CONFIG SET failed (possibly related to argument '{}') - {}"

# Server introspection
NO_PERSISTENCE = "ERR {} is not supported: Predis is a cache and does not persist data to disk"
LFU_NOT_SELECTED = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that "
    "when switching between policies at runtime LRU and LFU data will take some time to adjust."
)
LFU_SELECTED = (
    "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when "
    "switching between policies at runtime LRU and LFU data will take some time to adjust."
)
DEBUG_NOT_ALLOWED = (
    'ERR DEBUG command not allowed. If the enable-debug-command option is set to "local", you can '
    "run it from a local connection, otherwise you need to set this option in the configuration "
    "file, and then restart the server."
)


def wrong_arity(name: str) -> str:
    return f"ERR wrong number of arguments for '{name}' command"


def unknown_command(name: bytes, args: list[bytes]) -> str:
    shown = " ".join(f"'{_clip(a)}'" for a in args[:20])
    return f"ERR unknown command '{_clip(name)}', with args beginning with: {shown}{' ' if shown else ''}"


def unknown_subcommand(sub: bytes, command: str) -> str:
    return f"ERR unknown subcommand '{_clip(sub)}'. Try {command.upper()} HELP."


def invalid_expire(command: str) -> str:
    return f"ERR invalid expire time in '{command}' command"


def _clip(arg: bytes, limit: int = 128) -> str:
    # Redis shows at most 128 bytes of each argument and replaces newlines with spaces.
    text = arg[:limit].decode("utf-8", "surrogateescape")  # re-encoded byte for byte
    return text.replace("\r", " ").replace("\n", " ")
