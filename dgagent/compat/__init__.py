"""A drop-in for DeltaGlider 6.2.0's Python client: ``create_client()`` on dg-agent's engine.

Code written against ``deltaglider.create_client()`` runs by changing the import; names,
parameters and response dicts are DeltaGlider's, and what either client writes the other reads.
Covered: ``put_object``, ``get_object``, ``head_object``, ``list_objects`` (and
``list_objects_v2``), ``delete_object``, ``delete_objects``, ``delete_objects_recursive``,
``upload``, ``upload_chunked``, ``upload_batch``, ``download``, ``download_batch``, ``verify``,
``get_object_info``, ``estimate_compression``, ``find_similar_files``, ``get_bucket_stats``,
``create_bucket``, ``delete_bucket``, ``list_buckets``, ``put_bucket_acl``, ``get_bucket_acl``,
``generate_presigned_url``, ``generate_presigned_post``, ``rehydrate_for_download``,
``generate_presigned_url_with_rehydration``, ``purge_temp_files`` and ``clear_cache``; the ACL,
bucket and presigned calls go straight to the endpoint's boto3 client.

Where dg-agent answers differently, on purpose:

- ``list_objects`` and ``head_object`` give each file's original size (``Size``,
  ``ContentLength``), as ``get_object`` returns it; DeltaGlider gives the size of the stored delta.
- ``head_object`` and ``get_object`` find a file stored as a delta by its own name and return its
  stored metadata (DeltaGlider's ``head_object`` raises there, and its ``get_object`` gives ``{}``).
- ``Metadata`` given to ``put_object`` is accepted and not stored, as DeltaGlider does.
- ``get_bucket_stats`` counts stored bytes as every object of the bucket, references included,
  each once (dg-agent's one definition), whatever the ``mode``.
- ``upload_batch`` stores the files in the folder ``s3_prefix`` (one DeltaSpace: later files
  become deltas); DeltaGlider 6.2.0 stores each as ``<s3_prefix>/<name>/<name>``, alone.
- ``rehydrate_for_download`` writes under ``.dg/tmp/`` (hidden from listings, as all of
  dg-agent's internal objects are), not ``.deltaglider/tmp/`` (which DeltaGlider's listings
  show); ``purge_temp_files`` there deletes the expired ones (6.2.0's compares a naive time with
  an aware one and deletes none).
- ``get_object_info`` also finds a delta by the file's name, and fills ``last_modified``,
  ``etag``, ``compression_ratio`` (stored over original bytes) and ``delta_chain_length`` (1
  for a delta), which DeltaGlider leaves empty.
- ``estimate_compression`` takes dg-agent's delta extensions (``DG_DELTA_EXTENSIONS``, a
  superset of DeltaGlider's) as delta candidates; it reads no file bytes, as DeltaGlider.
- ``clear_cache`` empties the reference cache on disk (dg-agent keeps no bucket stats cache).
- Failed S3 calls raise dg-agent's errors (``StorageError``, ``NotFoundError``, ...) rather than
  ``RuntimeError``, and ``generate_presigned_url`` never falls back to a placeholder URL.
"""

from __future__ import annotations

import logging
from typing import Any

from dgagent.client import Client
from dgagent.compat.extras import ExtraCalls
from dgagent.compat.shapes import BucketStats, CompressionEstimate, ObjectInfo, UploadSummary
from dgagent.errors import ConfigError
from dgagent.storage import S3Options


def create_client(  # noqa: PLR0917 (DeltaGlider's signature, positional as there)
    endpoint_url: str | None = None,
    log_level: str = "INFO",
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    region_name: str | None = None,
    **kwargs: Any,
) -> DeltaGliderClient:
    """DeltaGlider's ``create_client`` signature. ``max_ratio`` is taken as DeltaGlider takes
    it; dg-agent's own options ``checksum_when_required`` and ``cache_dir`` too.

    >>> client = create_client(endpoint_url="http://127.0.0.1:9000", colour="blue")
    Traceback (most recent call last):
    ...
    dgagent.errors.ConfigError: create_client got an unknown option 'colour'; it takes \
max_ratio, checksum_when_required and cache_dir
    """
    kwargs.pop("tool_version", None)  # DeltaGlider's own version stamp: dg-agent writes its own
    max_ratio = float(kwargs.pop("max_ratio", 0.5))
    checksum = bool(kwargs.pop("checksum_when_required", False))
    cache_dir = kwargs.pop("cache_dir", None)
    if kwargs:
        raise ConfigError(
            f"create_client got an unknown option {next(iter(kwargs))!r}; it takes max_ratio, "
            "checksum_when_required and cache_dir"
        )
    logging.getLogger("dgagent").setLevel(log_level.upper())
    options = S3Options(
        endpoint_url=endpoint_url,
        region=region_name,
        checksum_when_required=checksum,
        access_key_id=aws_access_key_id,
        secret_access_key=aws_secret_access_key,
        session_token=aws_session_token,
    )
    return DeltaGliderClient(Client(s3=options, max_ratio=max_ratio, cache_dir=cache_dir))


class DeltaGliderClient(ExtraCalls):
    """DeltaGlider's boto3-shaped client, over a ``dgagent.Client`` (``.client``); its calls
    are in objects.py, buckets.py and extras.py of this package."""

    def __init__(self, client: Client) -> None:
        self.client = client


__all__ = [
    "BucketStats",
    "CompressionEstimate",
    "DeltaGliderClient",
    "ObjectInfo",
    "UploadSummary",
    "create_client",
]
