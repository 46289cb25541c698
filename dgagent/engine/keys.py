"""Object keys in a DeltaSpace tree: where a logical file lives and what its internal objects are.

A DeltaSpace is the folder of a key (everything before its last '/'). Inside it, ``reference.bin``
holds the first delta-eligible file whole, and ``<name>.delta`` holds each file as a delta against
it; any other file is stored "direct" under its own name. Further references live under the
DeltaSpace's hidden folder, content-addressed: ``<space>/.dg/refs/<sha256>/reference.bin``, so two
writers creating one can only ever write the same bytes to the same key, and DeltaGlider 6.2.0
(which reads ``<dg-ref-key's folder>/reference.bin``) still finds it. The internal names are
reserved: a user file named ``reference.bin`` or ``*.delta``, or inside a ``.dg`` folder, is
refused so that it can never clobber a reference or pose as a delta.
"""

from __future__ import annotations

import posixpath

from dgagent.errors import ReservedNameError

REFERENCE_NAME = "reference.bin"
DELTA_SUFFIX = ".delta"
HIDDEN = ".dg"
"""The folder name, in a DeltaSpace or at the bucket root, of dg-agent's internal objects."""


def deltaspace_of(key: str) -> str:
    """The DeltaSpace (folder) of a key, '' for the root; an internal object under a ``.dg``
    folder belongs to the DeltaSpace that holds that folder.

    >>> deltaspace_of("releases/app-1.2.zip"), deltaspace_of("app.zip")
    ('releases', '')
    >>> deltaspace_of("releases/.dg/refs/ab12/reference.bin")
    'releases'
    """
    parts = key.split("/")
    if HIDDEN in parts[:-1]:
        return "/".join(parts[: parts.index(HIDDEN)])
    return key.rpartition("/")[0]


def is_internal(key: str) -> bool:
    """Whether a key (or a listed folder, ending in '/') is one of dg-agent's hidden objects.

    >>> is_internal("rel/.dg/refs/ab/reference.bin"), is_internal("rel/.dg/"), is_internal("a/b")
    (True, True, False)
    """
    return HIDDEN in key.rstrip("/").split("/")


def references_prefix(deltaspace: str) -> str:
    """Where a DeltaSpace's content-addressed references are listed."""
    return join(deltaspace, f"{HIDDEN}/refs/")


def addressed_reference_key(deltaspace: str, sha256: str) -> str:
    """The content-addressed key of a reference with this SHA-256.

    >>> addressed_reference_key("rel", "ab12")
    'rel/.dg/refs/ab12/reference.bin'
    """
    return references_prefix(deltaspace) + f"{sha256}/{REFERENCE_NAME}"


def addressed_sha256(key: str) -> str | None:
    """The SHA-256 a content-addressed reference key carries, else None.

    >>> addressed_sha256("rel/.dg/refs/" + "a" * 64 + "/reference.bin") == "a" * 64
    True
    >>> addressed_sha256("rel/reference.bin") is None
    True
    """
    parts = key.split("/")
    if len(parts) < 4 or parts[-4:-2] != [HIDDEN, "refs"] or parts[-1] != REFERENCE_NAME:
        return None
    sha = parts[-2]
    return sha if len(sha) == 64 and all(c in "0123456789abcdef" for c in sha) else None


def relative_to_space(key: str) -> str:
    """A key relative to its DeltaSpace's folder (what ``dg-ref-path`` records).

    >>> relative_to_space("rel/reference.bin"), relative_to_space("rel/.dg/refs/ab/reference.bin")
    ('reference.bin', '.dg/refs/ab/reference.bin')
    """
    space = deltaspace_of(key)
    return key[len(space) + 1 :] if space else key


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
    if is_internal(key):
        raise ReservedNameError(
            f"cannot store {key!r}: folders named '{HIDDEN}' hold dg-agent's internal objects; "
            "rename the folder"
        )


def is_delta_eligible(name: str, extensions: tuple[str, ...]) -> bool:
    """Whether a file name ends with one of the delta extensions (case-insensitive).

    >>> is_delta_eligible("App-1.0.ZIP", (".zip",)), is_delta_eligible("notes.txt", (".zip",))
    (True, False)
    """
    lower = name.lower()
    return any(lower.endswith(ext) for ext in extensions)
