"""Output images in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO…), for several machines.

Objects are private: `/media/{key}` redirects to a short-lived signed URL of the object,
unless `MEDIA_BASE_URL` names a public bucket or a CDN that clients download from directly.

The client is obstore (Rust's `object_store` behind a small Python API) rather than boto3: a PUT
of a 100 KB image costs 0.28 ms of the worker's CPU against boto3's 2.2 ms, and a server-side
copy 0.22 ms against 2.0 ms (measured against SeaweedFS), and its calls let other threads run
meanwhile. Credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
`AWS_SESSION_TOKEN`), or from the instance's role (EC2, ECS, web identity).
"""

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import GenericError
from obstore.store import S3Store

from shared.settings import StorageSettings
from shared.storage.base import CACHE_CONTROL, Elsewhere, MissingObject, StorageUnavailable

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

# S3 refuses longer keys; a longer one names no object.
MAX_KEY_BYTES = 1024
# Written and removed to tell whether the store accepts writes (GET /readyz).
PROBE_KEY = ".readyz-probe"
# How obstore words a store's 4xx answer: a fault of the request, not a store that is away.
CLIENT_ERROR = "non-2xx status code: 4"

CLIENT_OPTIONS: "ClientConfig" = {
    # Any endpoint the settings name, http:// ones included (a store inside the network).
    "allow_http": True,
    # A store that does not answer fails the attempt within seconds instead of holding a worker.
    "connect_timeout": timedelta(seconds=3),
    "timeout": timedelta(seconds=30),
}
# Connection errors and 5xx are retried with backoff and jitter: three attempts, as before.
RETRY_CONFIG: "RetryConfig" = {"max_retries": 2, "retry_timeout": timedelta(seconds=30)}


@contextlib.contextmanager
def refusals_as_unavailable(doing: str) -> Iterator[None]:
    """A store that does not answer, or answers 5xx after the client's own retries, refuses
    writes: not a fault of the image. Any other refusal (no such bucket, access denied, a 4xx)
    is a fault."""
    try:
        yield
    except GenericError as error:
        if CLIENT_ERROR in str(error):
            raise
        raise StorageUnavailable(f"{doing}: {str(error).splitlines()[0]}") from error


class InvalidKey(ValueError):
    """A key that names no object: absolute, empty, with a `.`, `..` or empty part, a NUL byte, too long."""


def folder_prefix(prefix: str) -> str:
    """`S3_PREFIX` is a folder: `images`, `/images` and `images/` all store under `images/…`."""
    folder = prefix.strip("/")
    return f"{folder}/" if folder else ""


class S3Storage:
    """Objects stored under `{prefix}{key}` in `bucket`."""

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
        self._store: S3Store | None = None
        self._store_pid: int | None = None

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
    def store(self) -> S3Store:
        """This process's client, made on first use: a client (its connection pool and runtime)
        must not cross a fork, so none is made before one. Two threads racing on the first use may
        each make one and one is dropped, which is harmless."""
        if self._store is None or self._store_pid != os.getpid():
            # Path-style (`endpoint/bucket/key`): every S3-compatible server answers it, and it
            # needs no DNS name per bucket.
            config: S3Config = {"region": self.region, "virtual_hosted_style_request": False}
            if self.endpoint_url:
                config["endpoint"] = self.endpoint_url
            self._store = S3Store(self.bucket, config=config, client_options=CLIENT_OPTIONS, retry_config=RETRY_CONFIG)
            self._store_pid = os.getpid()
        return self._store

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
        path = self.object_key(key)
        with refusals_as_unavailable(f"writing {key}"):
            obstore.put(
                self.store,
                path,
                data,
                attributes={"Content-Type": content_type, "Cache-Control": CACHE_CONTROL},
                use_multipart=False,
            )

    def copy(self, source_key: str, key: str) -> None:
        # Done by the store itself (CopyObject): the bytes never pass through the worker, and the
        # copy keeps the source's content type and cache headers.
        source, path = self.object_key(source_key), self.object_key(key)
        try:
            with refusals_as_unavailable(f"writing {key}"):
                obstore.copy(self.store, source, path)
        except FileNotFoundError as error:  # obstore's NotFoundError
            raise MissingObject(source_key) from error

    def delete(self, keys: list[str]) -> None:
        # In DeleteObjects calls of up to 1,000 keys; an absent key is no error.
        paths = [self.object_key(key) for key in keys]
        if paths:
            with refusals_as_unavailable(f"deleting {len(paths)} objects"):
                obstore.delete(self.store, paths)

    def delete_request(self, request_id: str) -> None:
        folder = self.object_key(request_id) + "/"
        with refusals_as_unavailable(f"listing {folder}"):
            for page in obstore.list(self.store, prefix=folder):
                obstore.delete(self.store, [entry["path"] for entry in page])

    def probe(self) -> None:
        with refusals_as_unavailable("writing a probe"):
            obstore.put(self.store, f"{self.prefix}{PROBE_KEY}", b"probe", use_multipart=False)
            obstore.delete(self.store, f"{self.prefix}{PROBE_KEY}")

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
        url = obstore.sign(self.signing.store, "GET", object_key, timedelta(seconds=self.presigned_url_seconds))
        return Elsewhere(url)
