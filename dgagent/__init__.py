"""dg-agent: keep versioned build artifacts in S3 as small xdelta3 deltas (DeltaGlider format)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
