"""Output images in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO…), for several machines.

Objects are private: `/media/{key}` redirects to a short-lived signed URL of the object,
unless `MEDIA_BASE_URL` names a public bucket or a CDN that clients download from directly.
"""

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.settings import StorageSettings
from shared.storage.base import CACHE_CONTROL, Elsewhere, MissingObject, StorageUnavailable

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import ObjectIdentifierTypeDef

# S3 refuses longer keys; a longer one names no object.
MAX_KEY_BYTES = 1024
# Written and removed to tell whether the store accepts writes (GET /readyz).
PROBE_KEY = ".readyz-probe"
# Keys one DeleteObjects call may name.
DELETE_BATCH = 1000
SERVER_ERROR = 500
# What a store answers when the object to copy does not exist.
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

CLIENT_CONFIG = Config(
    # Path-style (`endpoint/bucket/key`): every S3-compatible server answers it, and it needs
    # no DNS name per bucket.
    s3={"addressing_style": "path"},
    # Signed URLs carry their lifetime (X-Amz-Expires); version 2 ones would not.
    signature_version="s3v4",
    # A store that does not answer fails the attempt within seconds instead of holding a worker;
    # the read timeout also covers the store's pause after a whole image was sent.
    connect_timeout=3,
    read_timeout=10,
    # Connection errors, throttling and 5xx are retried with backoff and jitter.
    retries={"mode": "standard", "max_attempts": 3},
    # Checksums only where S3 requires them: botocore's default (CRC32 trailers on every
    # upload) is refused by some S3-compatible servers.
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
)


@contextlib.contextmanager
def refusals_as_unavailable(doing: str) -> Iterator[None]:
    """A store that does not answer, or answers 5xx after botocore's own retries, refuses writes:
    not a fault of the image. Any other refusal (no such bucket, access denied) is a fault."""
    try:
        yield
    except BotoCoreError as error:
        raise StorageUnavailable(f"{doing}: {error}") from error
    except ClientError as error:
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= SERVER_ERROR:
            raise StorageUnavailable(f"{doing}: {error}") from error
        raise


class InvalidKey(ValueError):
    """A key that names no object: absolute, empty, with a `.`, `..` or empty part, a NUL byte, too long."""


def folder_prefix(prefix: str) -> str:
    """`S3_PREFIX` is a folder: `images`, `/images` and `images/` all store under `images/…`."""
    folder = prefix.strip("/")
    return f"{folder}/" if folder else ""


class S3Storage:
    """Objects stored under `{prefix}{key}` in `bucket`; credentials from boto3's default chain
    (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, a profile, an instance role)."""

    def __init__(
        self,
        bucket: str,
        public_base_url: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        presigned_url_seconds: int = 300,
    ) -> None:
        self.bucket = bucket
        self.public_base_url = public_base_url.rstrip("/")
        self.prefix = folder_prefix(prefix)
        self.endpoint_url = endpoint_url
        # Signed URLs name the host they were signed for: the one clients reach the store at,
        # which inside a private network may differ from the one the service uses.
        self.signing = (
            S3Storage(bucket, public_base_url, prefix=prefix, endpoint_url=public_endpoint_url, region=region)
            if public_endpoint_url and public_endpoint_url != endpoint_url
            else self
        )
        self.region = region
        self.presigned_url_seconds = presigned_url_seconds
        self._client: S3Client | None = None
        self._client_pid: int | None = None

    @classmethod
    def from_settings(cls, settings: StorageSettings, public_base_url: str) -> "S3Storage":
        if not settings.s3_bucket:  # the settings refuse STORAGE_BACKEND=s3 without one
            raise ValueError("S3_BUCKET must be set when STORAGE_BACKEND=s3")
        return cls(
            settings.s3_bucket,
            public_base_url,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            presigned_url_seconds=settings.s3_presigned_url_seconds,
        )

    @property
    def client(self) -> "S3Client":
        """This process's client, made on first use: a client (its connection pool) must not
        cross a fork, so none is made before one.

        Two threads racing on the first use may each make one and one is dropped, which is
        harmless: each comes from its own Session, as boto3's default session is not thread-safe.
        """
        if self._client is None or self._client_pid != os.getpid():
            session = boto3.session.Session()
            self._client = session.client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=CLIENT_CONFIG
            )
            self._client_pid = os.getpid()
        return self._client

    def object_key(self, key: str) -> str:
        """The bucket's key for `key`, checked by the local backend's rules, so that a key names
        an object on one backend only if it would on the other."""
        parts = key.split("/")
        # An absolute key starts with an empty part.
        if "\x00" in key or any(part in ("", ".", "..") for part in parts):
            raise InvalidKey(key)
        object_key = f"{self.prefix}{key}"
        if len(object_key.encode()) > MAX_KEY_BYTES:
            raise InvalidKey(key)
        return object_key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        # A PUT replaces the object whole: a reader sees the old image or the new one, never a
        # part, and a retried product simply writes its key again.
        with refusals_as_unavailable(f"writing {key}"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.object_key(key),
                Body=data,
                ContentType=content_type,
                CacheControl=CACHE_CONTROL,
            )

    def copy(self, source_key: str, key: str) -> None:
        # Done by the store itself (CopyObject): the bytes never pass through the worker, and the
        # copy keeps the source's content type and cache headers.
        try:
            with refusals_as_unavailable(f"writing {key}"):
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=self.object_key(key),
                    CopySource={"Bucket": self.bucket, "Key": self.object_key(source_key)},
                    MetadataDirective="COPY",
                )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in MISSING_CODES:
                raise MissingObject(source_key) from error
            raise

    def delete(self, keys: list[str]) -> None:
        # DeleteObjects takes up to 1,000 keys a call; an absent key is no error to it either.
        for start in range(0, len(keys), DELETE_BATCH):
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": self.object_key(key)} for key in keys[start : start + DELETE_BATCH]
            ]
            with refusals_as_unavailable(f"deleting {len(batch)} objects"):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def delete_request(self, request_id: str) -> None:
        folder = self.object_key(request_id) + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder)
        with refusals_as_unavailable(f"listing {folder}"):
            for page in pages:
                keys = [entry["Key"].removeprefix(self.prefix) for entry in page.get("Contents", [])]
                self.delete(keys)

    def probe(self) -> None:
        with refusals_as_unavailable("writing a probe"):
            self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}{PROBE_KEY}", Body=b"probe")
            self.client.delete_object(Bucket=self.bucket, Key=f"{self.prefix}{PROBE_KEY}")

    def public_url(self, key: str) -> str:
        """`{MEDIA_BASE_URL}/{key}` (so that base names the prefix's folder, prefix included),
        or the API's `/media/{key}`, which redirects to a signed URL."""
        return f"{self.public_base_url}/{key}"

    def locate(self, key: str) -> Elsewhere | None:
        """A signed GET URL of the object, valid `presigned_url_seconds`; None for an invalid key.

        Signing is local, with no request to the store: an object that does not exist is the
        bucket's own 404 once the client follows the redirect.
        """
        try:
            object_key = self.object_key(key)
        except InvalidKey:
            return None
        url = self.signing.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": object_key},
            ExpiresIn=self.presigned_url_seconds,
        )
        return Elsewhere(url)
