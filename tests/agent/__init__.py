"""Tests for the agent: watch, settle, index, workers and the socket API."""
