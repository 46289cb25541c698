"""Fixtures for fault scenarios: the real agent (from tests/agent) behind a fault proxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.conftest import agent  # noqa: F401 (re-exported fixture)
from tests.faults.proxy import FaultProxy


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's S3 emulator."""
    fault = FaultProxy(upstream_port=int(s3_endpoint.rsplit(":", 1)[1]))
    fault.start()
    try:
        yield fault
    finally:
        fault.stop()
