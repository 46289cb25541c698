"""The TUI's link to the agent: asyncio client, reconnect policy and the queue model.

Nothing in this package imports textual (a test checks it), so the protocol side can be used and
tested without a terminal. The error classes and records are the protocol's own
(``dgagent.rpc``), so a caller catches the same exceptions and reads the same records whether it
uses the CLI's client or this one.
"""

from __future__ import annotations

from dgagent.rpc import (
    AgentConnectionError,
    AgentNotRunning,
    AgentTimeoutError,
    RpcError,
)
from dgagent_tui.agent.client import AsyncAgentClient
from dgagent_tui.agent.link import Backoff
from dgagent_tui.agent.model import Problem, QueueModel, QueueRow

__all__ = [
    "AgentConnectionError",
    "AgentNotRunning",
    "AgentTimeoutError",
    "AsyncAgentClient",
    "Backoff",
    "Problem",
    "QueueModel",
    "QueueRow",
    "RpcError",
]
