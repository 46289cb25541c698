"""The contract between the agent and its clients, in one package.

- :mod:`~dgagent.rpc.protocol`: the version, method names, error codes and error classes, event
  types. No I/O.
- :mod:`~dgagent.rpc.records`: every record an answer or event carries (the schema), each with
  the one encoder and decoder of :mod:`~dgagent.rpc.record`. No I/O.
- :mod:`~dgagent.rpc.jsonrpc`: parsing requests and encoding answers and events. No I/O.
- :mod:`~dgagent.rpc.client`: a synchronous client (the CLI's); :mod:`~dgagent.rpc.server`,
  :mod:`~dgagent.rpc.connection` and :mod:`~dgagent.rpc.unix_socket`: the socket server;
  :mod:`~dgagent.rpc.events`: the event bus the server relays; :mod:`~dgagent.rpc.paths`: where
  the agent's socket (and the rest of its files) are.

docs/agent-api.md describes it for other clients and is checked against it by a test.
"""

from __future__ import annotations

from dgagent.rpc.client import AgentClient
from dgagent.rpc.paths import AgentPaths, agent_paths
from dgagent.rpc.protocol import (
    BUILTINS,
    PROTOCOL,
    AgentConnectionError,
    AgentNotRunning,
    AgentTimeoutError,
    ErrorCode,
    EventType,
    InvalidParams,
    Method,
    MethodNotFound,
    NotFound,
    ProtocolError,
    ProtocolMismatch,
    RpcError,
    Unauthorized,
    error_from_json,
)

__all__ = [
    "BUILTINS",
    "PROTOCOL",
    "AgentClient",
    "AgentConnectionError",
    "AgentNotRunning",
    "AgentPaths",
    "AgentTimeoutError",
    "ErrorCode",
    "EventType",
    "InvalidParams",
    "Method",
    "MethodNotFound",
    "NotFound",
    "ProtocolError",
    "ProtocolMismatch",
    "RpcError",
    "Unauthorized",
    "agent_paths",
    "error_from_json",
]
