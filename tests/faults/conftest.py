"""Fixtures for fault scenarios: the real agent (from tests/agent) behind a fault proxy (the
``proxy`` fixture, tests/conftest.py)."""

from __future__ import annotations

from tests.agent.conftest import agent  # noqa: F401 (re-exported fixture)
