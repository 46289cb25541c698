"""The version of dg-agent, in a module of its own: every part can import it without importing
the package's public API (dgagent/__init__.py), which imports them."""

__version__ = "0.1.0"
