"""The TUI's link to the agent: asyncio client, reconnect policy and the queue model.

Nothing in this package imports textual (a test checks it), so the protocol side can be used and
tested without a terminal. The error classes are the agent's own (``dgagent.agent.client``), so a
caller catches the same exceptions whether it uses the CLI's client or this one.
"""

from __future__ import annotations

from dgagent.agent.client import (
    AgentConnectionError,
    AgentNotRunning,
    AgentTimeoutError,
    RpcError,
)
from tui.agent.client import AsyncAgentClient
from tui.agent.link import Backoff
from tui.agent.model import Problem, QueueModel, QueueRow, problems

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
    "problems",
]
