"""The workers' retry decision follows the error's type, never its message."""

from __future__ import annotations

import errno

import pytest

from dgagent.agent.workers import Failure, failure
from dgagent.errors import (
    AccessDeniedError,
    ConfigError,
    DgError,
    IntegrityError,
    NotFoundError,
    SourceChangedError,
    StorageError,
)


def disk_full_error() -> DgError:
    error = StorageError("cannot write the work copy")
    error.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    return error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (SourceChangedError("a.zip: the file was rewritten"), Failure.CHANGED),
        (IntegrityError("a.zip changed while it was being stored"), Failure.PERMANENT),
        (IntegrityError("SHA-256 mismatch"), Failure.PERMANENT),
        (AccessDeniedError("denied"), Failure.PERMANENT),
        (ConfigError("bad"), Failure.PERMANENT),
        (NotFoundError("no such bucket"), Failure.PERMANENT),
        (StorageError("503 SlowDown"), Failure.TRANSIENT),
        (disk_full_error(), Failure.DISK_FULL),
    ],
)
def test_the_kind_of_a_failure_is_its_type(error: DgError, kind: Failure) -> None:
    assert failure(error) is kind
