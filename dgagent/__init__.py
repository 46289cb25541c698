"""dg-agent: keep versioned build artifacts in S3 as small xdelta3 deltas (DeltaGlider format).

The public Python API is what this module exports (``Client``, its results and the errors; see
docs/python-api.md) and ``dgagent.compat``; every other module is internal and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dgagent.version import __version__

if TYPE_CHECKING:
    from dgagent.client import Client, SyncResult
    from dgagent.engine.results import Entry, GetResult, PutResult, Summary
    from dgagent.errors import (
        AccessDeniedError,
        CodecError,
        ConfigError,
        DgError,
        IntegrityError,
        NotFoundError,
        StorageError,
    )

# Loaded on first use: the engine (boto3 among it) is not imported by ``import dgagent`` alone,
# which the TUI and the engine's own modules do for ``__version__``.
_EXPORTS = {
    "Client": "dgagent.client",
    "SyncResult": "dgagent.client",
    "Entry": "dgagent.engine.results",
    "GetResult": "dgagent.engine.results",
    "PutResult": "dgagent.engine.results",
    "Summary": "dgagent.engine.results",
    "AccessDeniedError": "dgagent.errors",
    "CodecError": "dgagent.errors",
    "ConfigError": "dgagent.errors",
    "DgError": "dgagent.errors",
    "IntegrityError": "dgagent.errors",
    "NotFoundError": "dgagent.errors",
    "StorageError": "dgagent.errors",
}

__all__ = [
    "AccessDeniedError",
    "Client",
    "CodecError",
    "ConfigError",
    "DgError",
    "Entry",
    "GetResult",
    "IntegrityError",
    "NotFoundError",
    "PutResult",
    "StorageError",
    "Summary",
    "SyncResult",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dgagent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
