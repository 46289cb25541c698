"""The server's side of JSON-RPC 2.0: parse a request line, encode answers, errors and events.

Every message is one JSON object on one ``\\n``-terminated line. A malformed line becomes a
BadRequestError that already carries its error answer; a handler's exception becomes an error
answer too, so nothing a client sends or a handler raises can break the connection. The error
codes and :class:`RpcError` live in :mod:`dgagent.rpc.protocol`, shared with the clients.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dgagent.errors import DgError
from dgagent.rpc.protocol import ErrorCode, RpcError
from dgagent.rpc.records import Event, Record

log = logging.getLogger(__name__)
PARSE_ERROR, INVALID_REQUEST = ErrorCode.PARSE_ERROR, ErrorCode.INVALID_REQUEST

# A method: the request's params in, a JSON-able result out (or an RpcError, a DgError).
Handler = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Request:
    """A parsed request; a ``notification`` (no ``id`` member) is never answered."""

    id: Any
    method: str
    params: dict[str, Any]
    notification: bool


def encode(message: dict[str, Any]) -> bytes:
    # json.dumps escapes newlines inside strings, so a message always fits on one line.
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def result_line(request: Request, result: Any) -> bytes:
    """The answer to ``request``; a result JSON cannot carry becomes an internal error."""
    if isinstance(result, Record):
        result = result.to_json()
    try:
        return encode({"jsonrpc": "2.0", "id": request.id, "result": result})
    except (TypeError, ValueError, RecursionError) as exc:
        log.error("the result of %r is not JSON-serialisable: %s", request.method, exc)
        message = f"internal error in {request.method}: the result is not JSON-serialisable"
        return error_line(request.id, RpcError(ErrorCode.INTERNAL_ERROR, message))


def error_line(request_id: Any, error: RpcError) -> bytes:
    """The error answer; ``request_id`` is None when the request's id could not be read."""
    try:
        return encode({"jsonrpc": "2.0", "id": request_id, "error": error.to_json()})
    except (TypeError, ValueError):  # unserialisable data: the code and message still go out
        return encode(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": error.code, "message": error.message},
            }
        )


def event_line(event: Event) -> bytes:
    # default=str: an odd value in event data (a Path, a datetime) must not stop the stream.
    params = event.to_json()
    line = json.dumps(
        {"jsonrpc": "2.0", "method": "event", "params": params}, separators=(",", ":"), default=str
    )
    return line.encode() + b"\n"


class BadRequestError(Exception):
    """A line that is not a valid request; ``answer`` is the error line that replies to it."""

    def __init__(self, request_id: Any, code: int, message: str) -> None:
        super().__init__(message)
        self.answer = error_line(request_id, RpcError(code, message))


def parse_request(line: bytes) -> Request:
    """The request on ``line``; raises BadRequestError for anything malformed."""
    try:
        message = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequestError(
            None, ErrorCode.PARSE_ERROR, "parse error: the message is not UTF-8"
        ) from None
    except RecursionError:
        raise BadRequestError(
            None, ErrorCode.PARSE_ERROR, "parse error: nested too deeply"
        ) from None
    except ValueError as exc:
        raise BadRequestError(None, PARSE_ERROR, f"parse error: {exc}") from None
    if isinstance(message, list):
        raise BadRequestError(None, INVALID_REQUEST, "batches are not supported")
    if not isinstance(message, dict):
        raise BadRequestError(None, INVALID_REQUEST, "a request must be a JSON object")
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int | float | None):
        raise BadRequestError(
            None, ErrorCode.INVALID_REQUEST, '"id" must be a string, a number or null'
        )
    if message.get("jsonrpc") != "2.0":
        raise BadRequestError(
            request_id, ErrorCode.INVALID_REQUEST, 'the "jsonrpc" member must be "2.0"'
        )
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise BadRequestError(
            request_id, ErrorCode.INVALID_REQUEST, 'the "method" member must be a non-empty string'
        )
    params = message.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise BadRequestError(
            request_id,
            ErrorCode.INVALID_PARAMS,
            f'"params" must be an object of named parameters, not {type(params).__name__}',
        )
    return Request(request_id, method, params, notification="id" not in message)


def run_handler(handler: Handler, request: Request) -> bytes:
    """Runs in the pool: call the handler and encode its answer (or its error)."""
    try:
        result = handler(request.params)
    except RpcError as exc:
        return error_line(request.id, exc)
    except DgError as exc:
        return error_line(request.id, RpcError(ErrorCode.APP_ERROR, str(exc)))
    except Exception as exc:
        log.exception("handler for %r failed", request.method)
        message = f"internal error in {request.method}: {type(exc).__name__} (see the agent log)"
        return error_line(request.id, RpcError(ErrorCode.INTERNAL_ERROR, message))
    return result_line(request, result)  # encoded here, in the pool, not on the loop
