"""Tests of dgagent.engine."""
