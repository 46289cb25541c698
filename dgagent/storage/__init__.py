"""Storage backends behind one small interface, and the URLs that name them.

``s3://bucket/prefix/`` is an S3Storage (boto3); ``file:///abs/path/`` is a LocalStorage whose
root is the filesystem root, so the key of ``file:///srv/store/a.zip`` is ``srv/store/a.zip``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dgagent.errors import ConfigError
from dgagent.storage.base import ObjectInfo, Prefix, Progress, Storage, check_key
from dgagent.storage.local import LocalStorage
from dgagent.storage.s3 import S3Options, S3Storage, list_buckets

__all__ = [
    "LocalStorage",
    "Location",
    "ObjectInfo",
    "Prefix",
    "Progress",
    "S3Options",
    "S3Storage",
    "Storage",
    "check_key",
    "is_store_url",
    "list_buckets",
    "parse_location",
]


def is_store_url(text: str) -> bool:
    return text.startswith(("s3://", "file://"))


@dataclass(frozen=True)
class Location:
    """A store and a key (or key prefix) inside it, as named by one URL."""

    storage: Storage
    key: str

    @property
    def url(self) -> str:
        return f"{self.storage.url}/{self.key}"

    @property
    def is_folder(self) -> bool:
        """AWS CLI semantics: a trailing '/' (or the bare root) names a folder."""
        return self.key == "" or self.key.endswith("/")


def parse_location(
    url: str, options: S3Options | None = None, *, shared_client: bool = False
) -> Location:
    """Open the store a URL names; bad URLs get one sentence with the expected form.

    Keys are taken literally, as the AWS CLI does: no percent-decoding, and '?' or '#' are
    ordinary characters of a key.
    """
    if url.startswith("s3://"):
        bucket, _, key = url[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"{url!r} has no bucket name; write it as s3://bucket/prefix/")
        return Location(S3Storage(bucket, options, shared_client=shared_client), key)
    if url.startswith("file://"):
        path = url[len("file://") :]
        if path.startswith("localhost/"):
            path = path[len("localhost") :]
        if not path.startswith("/"):
            raise ConfigError(f"{url!r} is not absolute; write it as file:///absolute/path/")
        folder = path if path.endswith("/") else path.rpartition("/")[0] or "/"
        return Location(LocalStorage(Path("/"), keep=Path(folder)), path.lstrip("/"))
    raise ConfigError(f"{url!r} is not a store URL; use s3://bucket/prefix/ or file:///path/")
