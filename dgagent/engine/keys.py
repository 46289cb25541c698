"""Object keys in a DeltaSpace tree: where a logical file lives and what its internal objects are.

A DeltaSpace is the folder of a key (everything before its last '/'). Inside it, ``reference.bin``
holds the first delta-eligible file whole, and ``<name>.delta`` holds each file as a delta against
it; any other file is stored "direct" under its own name. Both internal names are reserved: a user
file with either name is refused so that it can never clobber a reference or pose as a delta.
"""

from __future__ import annotations

import posixpath

from dgagent.errors import ReservedNameError

REFERENCE_NAME = "reference.bin"
DELTA_SUFFIX = ".delta"


def deltaspace_of(key: str) -> str:
    """The DeltaSpace (folder) of a key, '' for the root.

    >>> deltaspace_of("releases/app-1.2.zip"), deltaspace_of("app.zip")
    ('releases', '')
    """
    return key.rpartition("/")[0]


def join(deltaspace: str, name: str) -> str:
    """A key from a DeltaSpace and a name.

    >>> join("releases", "reference.bin"), join("", "reference.bin")
    ('releases/reference.bin', 'reference.bin')
    """
    return f"{deltaspace}/{name}" if deltaspace else name


def reference_key(deltaspace: str) -> str:
    """Key of the DeltaSpace's reference object."""
    return join(deltaspace, REFERENCE_NAME)


def delta_key(key: str) -> str:
    """Physical key of the delta of logical ``key``."""
    return key + DELTA_SUFFIX


def is_reference(key: str) -> bool:
    return posixpath.basename(key) == REFERENCE_NAME


def is_delta(key: str) -> bool:
    return key.endswith(DELTA_SUFFIX)


def logical_key(physical: str) -> str:
    """The user's name for a stored object: ``x.zip.delta`` is ``x.zip``.

    >>> logical_key("rel/x.zip.delta"), logical_key("rel/notes.txt")
    ('rel/x.zip', 'rel/notes.txt')
    """
    return physical[: -len(DELTA_SUFFIX)] if is_delta(physical) else physical


def check_user_key(key: str) -> None:
    """Refuse a user file whose name DeltaGlider uses for its own objects."""
    name = posixpath.basename(key)
    if name == REFERENCE_NAME or name.endswith(DELTA_SUFFIX):
        raise ReservedNameError(
            f"cannot store {key!r}: the names 'reference.bin' and '*.delta' are reserved for "
            "DeltaGlider's internal objects; rename the file (e.g. add a suffix)"
        )


def is_delta_eligible(name: str, extensions: tuple[str, ...]) -> bool:
    """Whether a file name ends with one of the delta extensions (case-insensitive).

    >>> is_delta_eligible("App-1.0.ZIP", (".zip",)), is_delta_eligible("notes.txt", (".zip",))
    (True, False)
    """
    lower = name.lower()
    return any(lower.endswith(ext) for ext in extensions)
