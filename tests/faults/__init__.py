"""Fault injection for tests: a misbehaving S3 proxy and the end-state oracle."""
