"""The names of the agent's socket API: its version, methods, error codes and errors, events.

No I/O here: the server, both clients and the TUI's fake agent take these names from this one
place, and docs/agent-api.md is checked against them (tests/agent/test_api_doc.py).

    DgError
    ├── RpcError                            the agent answered a call with a JSON-RPC error
    │   ├── InvalidParams (ValueError)      a param is missing or of the wrong type
    │   ├── MethodNotFound (LookupError)    no such method
    │   ├── NotFound (LookupError)          no such watch, item or object
    │   ├── Unauthorized (PermissionError)  the peer runs under another uid
    │   └── ProtocolMismatch                client and agent speak different versions
    ├── ProtocolError (ValueError)          a message of the wrong shape (records.py)
    ├── AgentConnectionError (ConnectionError)   the connection failed or was closed
    │   └── AgentNotRunning                 nothing listens on the socket
    └── AgentTimeoutError (TimeoutError)    the agent did not answer in time
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any, ClassVar

from dgagent.errors import DgError

PROTOCOL = 1


class ErrorCode(IntEnum):
    """JSON-RPC 2.0's codes, then the agent's own (-32000 to -32099 are for servers)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    APP_ERROR = -32000  # a handler raised a DgError; the message is its text
    UNAUTHORIZED = -32001  # the peer runs under another uid
    PROTOCOL_MISMATCH = -32002  # hello: client and agent speak different protocol versions
    NOT_FOUND = -32003  # no such watch, item or object
    CONFLICT = -32004  # the request clashes with the current state


class Method(StrEnum):
    """Every method a client may call; the first three the server answers itself."""

    HELLO = "hello"
    SUBSCRIBE = "events.subscribe"
    UNSUBSCRIBE = "events.unsubscribe"
    STATUS = "status"
    QUEUE = "queue"
    TRANSFERS = "transfers"
    STATS = "stats"
    WATCHES_LIST = "watches.list"
    WATCHES_ADD = "watches.add"
    WATCHES_REMOVE = "watches.remove"
    PAUSE = "pause"
    RESUME = "resume"
    RESCAN = "rescan"
    RETRY = "retry"
    CANCEL = "cancel"
    BROWSE_BUCKETS = "browse.buckets"
    BROWSE_LIST = "browse.list"
    VERIFY = "verify"
    DOWNLOAD = "download"
    RESTORE = "restore"
    DELETE = "delete"
    PRUNE = "prune"
    CONFIG_RELOAD = "config.reload"
    SHUTDOWN = "shutdown"


BUILTINS = frozenset({Method.HELLO, Method.SUBSCRIBE, Method.UNSUBSCRIBE})


class EventType(StrEnum):
    """The ``type`` of a pushed event; records.EVENT_DATA gives each one's ``data``."""

    AGENT_STARTED = "agent.started"
    AGENT_STOPPING = "agent.stopping"
    AGENT_ERROR = "agent.error"
    AGENT_PAUSED = "agent.paused"
    AGENT_RESUMED = "agent.resumed"
    CONFIG_RELOADED = "config.reloaded"
    SCAN_STARTED = "scan.started"
    SCAN_FINISHED = "scan.finished"
    FILE_QUEUED = "file.queued"
    FILE_UPLOADING = "file.uploading"
    FILE_PROGRESS = "file.progress"
    FILE_STORED = "file.stored"
    FILE_RETRY = "file.retry"
    FILE_FAILED = "file.failed"
    FILE_DELETED = "file.deleted"
    DELETE_REFUSED = "delete.refused"
    PRUNE_FINISHED = "prune.finished"
    WATCH_STATE = "watch.state"
    EVENTS_DROPPED = "events.dropped"
    """Not an event of the agent's: the marker a client gets in place of the events it lost."""


class RpcError(DgError):
    """A JSON-RPC error: ``code`` says which kind, the message is for the user."""

    code_of_class: ClassVar[ErrorCode] = ErrorCode.APP_ERROR

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @property
    def kind(self) -> ErrorCode | None:
        """The code as an ErrorCode; None for a code this version does not know."""
        try:
            return ErrorCode(self.code)
        except ValueError:
            return None

    def to_json(self) -> dict[str, Any]:
        """The ``error`` member of a response."""
        error: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self.code)}, {self.message!r})"


class _CodedError(RpcError):
    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(self.code_of_class, message, data)


class InvalidParams(_CodedError, ValueError):  # noqa: N818 - named after JSON-RPC's error
    code_of_class = ErrorCode.INVALID_PARAMS


class MethodNotFound(_CodedError, LookupError):  # noqa: N818
    code_of_class = ErrorCode.METHOD_NOT_FOUND


class NotFound(_CodedError, LookupError):  # noqa: N818
    code_of_class = ErrorCode.NOT_FOUND


class Unauthorized(_CodedError, PermissionError):  # noqa: N818
    code_of_class = ErrorCode.UNAUTHORIZED


class ProtocolMismatch(_CodedError):  # noqa: N818
    code_of_class = ErrorCode.PROTOCOL_MISMATCH


_BY_CODE: dict[int, type[_CodedError]] = {
    cls.code_of_class: cls
    for cls in (InvalidParams, MethodNotFound, NotFound, Unauthorized, ProtocolMismatch)
}


def error_from_json(error: Any) -> RpcError:
    """The exception an ``error`` member stands for, of the class its code names."""
    if not isinstance(error, dict):
        return RpcError(ErrorCode.INTERNAL_ERROR, f"the agent sent a malformed error: {error!r}")
    code = error.get("code")
    message = str(error.get("message", "unknown error"))
    if not isinstance(code, int) or isinstance(code, bool):
        return RpcError(ErrorCode.INTERNAL_ERROR, message, error.get("data"))
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message, error.get("data"))
    return RpcError(code, message, error.get("data"))


class ProtocolError(DgError, ValueError):
    """A message that does not have the shape the protocol says (a field missing, unknown, or
    of the wrong type): an agent or client of another version, or a bug."""


class AgentConnectionError(DgError, ConnectionError):
    """The connection to the agent could not be opened or was lost."""


class AgentNotRunning(AgentConnectionError):  # noqa: N818 - the name the CLI and TUI use
    """Nothing listens on the agent's socket."""

    def __init__(self, socket_path: Path, *, refused: bool = False) -> None:
        where = f"nothing listens on {socket_path}" if refused else f"no socket at {socket_path}"
        super().__init__(f"the agent is not running ({where}); start it with: dg-agent start")
        self.socket_path = socket_path


class AgentTimeoutError(DgError, TimeoutError):
    """The agent did not answer in time."""


def request(request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request object, as both clients send it."""
    return {"jsonrpc": "2.0", "id": request_id, "method": str(method), "params": params or {}}
