"""Bucket calls of the compat client: create, list and delete buckets, and ACLs; DeltaGlider
passes these straight to boto3, and so does this."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import botocore.exceptions

from dgagent.client import Client
from dgagent.storage import S3Storage
from dgagent.storage.s3 import translate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

from dgagent.compat.shapes import (
    bucket_url,
    error_code,
    response_ok,
)


class BucketCalls:
    """The bucket calls, over ``self.client`` (a ``dgagent.Client``)."""

    client: Client

    def _s3(self, bucket: str) -> S3Storage:
        store, _ = self.client.locate(bucket_url(bucket))
        assert isinstance(store.storage, S3Storage)  # an s3:// URL always makes one
        return store.storage

    def _boto(self) -> S3Client:
        """The endpoint's boto3 client, for the calls DeltaGlider passes straight through."""
        return S3Storage("-", self.client.s3, shared_client=True).client

    def create_bucket(
        self,
        Bucket: str,  # noqa: N803
        CreateBucketConfiguration: dict[str, str] | None = None,  # noqa: N803
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Create a bucket; one that exists already is success, as in DeltaGlider."""
        params: dict[str, Any] = {"Bucket": Bucket}
        if CreateBucketConfiguration:
            params["CreateBucketConfiguration"] = CreateBucketConfiguration
        try:
            response = self._boto().create_bucket(**params)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                raise translate(exc, f"bucket {Bucket}") from exc
            return {"Location": f"/{Bucket}", "ResponseMetadata": response_ok()}
        return {
            "Location": response.get("Location", f"/{Bucket}"),
            "ResponseMetadata": response_ok(),
        }

    def list_buckets(self, **kwargs: Any) -> dict[str, Any]:
        """The buckets the credentials can see (``Name``, ``CreationDate``)."""
        try:
            raw = self._boto().list_buckets()
        except botocore.exceptions.ClientError as exc:
            raise translate(exc, "the bucket list") from exc
        buckets = [dict(b) for b in raw.get("Buckets", [])]
        return {
            "Buckets": buckets,
            "Owner": dict(raw.get("Owner", {})),
            "ResponseMetadata": response_ok(),
        }

    def delete_bucket(self, Bucket: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        """Delete an empty bucket; one that is not there is success, as in DeltaGlider."""
        try:
            self._boto().delete_bucket(Bucket=Bucket)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "NoSuchBucket":
                raise translate(exc, f"bucket {Bucket}") from exc
        return {"ResponseMetadata": response_ok(204)}

    def put_bucket_acl(  # noqa: PLR0917 (DeltaGlider's signature)
        self,
        Bucket: str,  # noqa: N803
        ACL: str | None = None,  # noqa: N803
        AccessControlPolicy: dict[str, Any] | None = None,  # noqa: N803
        GrantFullControl: str | None = None,  # noqa: N803
        GrantRead: str | None = None,  # noqa: N803
        GrantReadACP: str | None = None,  # noqa: N803
        GrantWrite: str | None = None,  # noqa: N803
        GrantWriteACP: str | None = None,  # noqa: N803
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Set a bucket's ACL (passed to S3 as given)."""
        given: dict[str, Any] = {
            "ACL": ACL,
            "AccessControlPolicy": AccessControlPolicy,
            "GrantFullControl": GrantFullControl,
            "GrantRead": GrantRead,
            "GrantReadACP": GrantReadACP,
            "GrantWrite": GrantWrite,
            "GrantWriteACP": GrantWriteACP,
        }
        params = {k: v for k, v in given.items() if v is not None}
        try:
            self._boto().put_bucket_acl(Bucket=Bucket, **params)
        except botocore.exceptions.ClientError as exc:
            raise translate(exc, f"the ACL of bucket {Bucket}") from exc
        return {"ResponseMetadata": response_ok()}

    def get_bucket_acl(self, Bucket: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        """A bucket's ACL: S3's response (``Owner``, ``Grants``)."""
        try:
            return dict(self._boto().get_bucket_acl(Bucket=Bucket))
        except botocore.exceptions.ClientError as exc:
            raise translate(exc, f"the ACL of bucket {Bucket}") from exc
