"""Reference rotation: when a new version should become its DeltaSpace's next reference.

With one reference per DeltaSpace, each version's delta is taken against the first one, and on a
long release series it grows until every file is stored whole (botocore wheels: 0.08 of the file
against v1 at v2, 0.62 at v40). ``rotate`` is the amortised rule of research H: keep, for the
current reference, ``first`` (its first delta's size) and ``paid`` (the sum over its later deltas
of what each costs above ``first``). A new version becomes the next reference when its delta is
above the max ratio, or when ``paid`` would reach one file size: by then the drift has cost as much
as storing one version whole. Every delta stays against a whole-file reference, so DeltaGlider
6.2.0 reads them. ``single`` keeps one reference per DeltaSpace, as DeltaGlider does (for buckets
deltaglider_proxy must read: it only ever reads ``<folder>/reference.bin``).

The decision depends on the previous upload into the same DeltaSpace, so uploads within one are
made one at a time in release order; the state lives in memory and in each delta's
``dg-agent-cost`` metadata, from which a new process picks it up.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

COST_KEY = "dg-agent-cost"
"""Our metadata key on deltas: the reference's ``first`` and ``paid`` after this delta."""
WHY_KEY = "dg-agent-why"
"""Our metadata key on every object we write: why it was stored as it is."""


class Decision(enum.Enum):
    DELTA = "delta"
    NEW_REFERENCE = "new reference"
    WHOLE = "whole"


@dataclass(frozen=True)
class Cost:
    """What the deltas against one reference have cost so far."""

    ref_sha256: str
    first: int | None = None
    """Size of the first delta made against the reference (its own zero-diff one aside)."""
    paid: int = 0
    """Sum over its later deltas of ``max(0, delta - first)``."""

    def after(self, delta_size: int) -> Cost:
        """The cost once a delta of this size is stored against the reference."""
        if self.first is None:
            return Cost(self.ref_sha256, delta_size, 0)
        return Cost(self.ref_sha256, self.first, self.paid + max(0, delta_size - self.first))

    def encode(self) -> str:
        """``"<first> <paid>"``, ``-`` for an unknown first."""
        return f"{'-' if self.first is None else self.first} {self.paid}"

    @classmethod
    def parse(cls, ref_sha256: str, text: str | None) -> Cost:
        """The cost recorded in a delta's metadata; a fresh one when absent or unreadable."""
        parts = (text or "").split()
        if len(parts) != 2 or not parts[1].isdigit():
            return cls(ref_sha256)
        first = int(parts[0]) if parts[0].isdigit() else None
        return cls(ref_sha256, first, int(parts[1]))


def decide(
    policy: str, cost: Cost, delta_size: int | None, size: int, max_ratio: float
) -> tuple[Decision, str]:
    """What to do with a version whose delta against the current reference is ``delta_size``
    bytes (None: the encode was stopped once it passed the max ratio), and why, in words.

    A max ratio of 0 asks for no deltas at all beyond the first reference: whole files."""
    if max_ratio <= 0:
        return Decision.WHOLE, "whole: the max ratio is 0, so no delta is worth keeping"
    if delta_size is None or delta_size > max_ratio * size:
        if delta_size is None:
            over = f"its delta passed the max ratio {max_ratio:g} of the file (encode stopped)"
        else:
            over = f"its delta was {delta_size / size:.3f} of the file, above the max ratio "
            over += f"{max_ratio:g}"
        if policy == "single":
            return Decision.WHOLE, f"whole: {over}"
        return Decision.NEW_REFERENCE, f"new reference: {over}"
    if policy != "single" and cost.after(delta_size).paid >= size:
        return (
            Decision.NEW_REFERENCE,
            "new reference: the deltas against the previous one had grown by one file size",
        )
    return Decision.DELTA, "delta"


_VERSION = re.compile(r"\d+(?:[._-]?\d+)*")


def lineage(name: str) -> str:
    """The release line a file name belongs to: the name with its version numbers blanked.

    Each lineage of a DeltaSpace has its own current reference, so a folder holding several
    products (an app and its docs, or wheels for several platforms) does not make every file a
    new reference by turns.

    >>> lineage("app-1.2.3.zip") == lineage("app-1.10.zip")
    True
    >>> lineage("botocore-1.43.97-py3-none-any.whl")
    'botocore-#-py#-none-any.whl'
    """
    return _VERSION.sub("#", name)
