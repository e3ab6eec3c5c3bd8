"""Every setting of the service, read from the environment and `.env` (one class, pydantic-settings)."""

import base64
import binascii
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from standardwebhooks import Webhook

MiB = 1024 * 1024
LogFormat = Literal["console", "json"]
API_PREFIX = "/api/v1"
WEBHOOK_SECRET_PREFIX = "whsec_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Where the service runs and what it hands out.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    public_base_url: str | None = None
    data_dir: Path = Path("./data")

    # External servers; unset means `make run` starts embedded ones.
    mongodb_url: str | None = None
    redis_url: str | None = None
    mongodb_database: str = "image_service"

    # Security.
    allow_private_networks: bool = False

    # Webhooks (Standard Webhooks).
    webhook_secret: str | None = None
    webhook_retry_base_seconds: float = Field(default=5.0, ge=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Deliveries at once: threads of their own worker, mostly waiting on other people's servers.
    webhook_concurrency: int = Field(default=32, ge=1, le=256)

    # Image output.
    jpeg_quality: int = Field(default=50, ge=1, le=100)
    # Huffman optimisation: ~9% smaller JPEGs for ~1.4x the CPU per image (README).
    jpeg_optimize: bool = False
    # Pillow's PNG optimize: 0-3% smaller for 3-5x the CPU per PNG (README).
    png_optimize: bool = False
    # Processes of an image worker that decode and encode, one image each at a time; unset means
    # one per CPU core. They bound the worker's decoded pictures, hence its memory.
    codec_concurrency: int | None = Field(default=None, ge=1, le=64)
    # A codec process working on one image for longer is killed and replaced; the image fails.
    codec_timeout_seconds: float = Field(default=120.0, gt=0)

    # Upload limits.
    max_upload_bytes: int = Field(default=10 * MiB, ge=1)
    max_products: int = Field(default=10_000, ge=1)
    max_images_per_request: int = Field(default=20_000, ge=1)
    max_images_per_product: int = Field(default=100, ge=1)
    max_url_length: int = Field(default=2048, ge=16)
    max_product_name_length: int = Field(default=255, ge=1)
    max_reported_errors: int = Field(default=100, ge=1)

    # Download limits.
    download_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    download_total_timeout_seconds: float = Field(default=30.0, gt=0)
    download_max_bytes: int = Field(default=25 * MiB, ge=1)
    download_max_redirects: int = Field(default=5, ge=0)
    download_attempts: int = Field(default=3, ge=1)
    download_backoff_seconds: float = Field(default=0.5, ge=0)
    # Images of one product fetched (and held until compressed and stored) at once.
    download_concurrency: int = Field(default=8, ge=1, le=64)

    # Image decoding limits.
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    max_animation_frames: int = Field(default=500, ge=1)
    # Canvas x frames: every frame is decoded at the full canvas size, so a small file can cost this much.
    max_animation_pixels: int = Field(default=200_000_000, ge=1)

    # Status answers are shared by all pollers of a request for this long (0 turns it off).
    # At most 2 s: an answer may show the state of at most 2 s before it was asked for (CONTRACT §4).
    status_cache_seconds: float = Field(default=0.5, ge=0, le=2)
    status_cache_max_bytes: int = Field(default=32 * MiB, ge=0)

    # Recovery: how long a product may be held by a worker without renewing its lease,
    # how many times a product is tried, how often the sweeper looks for lost work.
    product_lease_seconds: float = Field(default=60.0, gt=0)
    product_max_attempts: int = Field(default=3, ge=1)
    # Finished products are folded into the request document in batches, at most this often.
    merge_interval_seconds: float = Field(default=1.0, gt=0)
    sweep_interval_seconds: float = Field(default=10.0, gt=0)
    stall_seconds: float = Field(default=120.0, gt=0)

    # Products an image worker works on at once (its threads); unset means eight per CPU core.
    # 0 starts none: an API-only host, with the image workers on other machines (`make worker`).
    worker_concurrency: int | None = Field(default=None, ge=0)

    # Where output images are kept: files under DATA_DIR/media, or an S3-compatible bucket
    # (credentials from the standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    storage_backend: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None
    # Where clients reach the store, when not at S3_ENDPOINT_URL (signed URLs name this host).
    s3_public_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    # How long a signed URL that /media redirects to stays valid.
    s3_presigned_url_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    # Public base of stored images (a public bucket or a CDN); unset: {PUBLIC_BASE_URL}/media.
    media_base_url: str | None = None

    # Who may call the API, how often, and from which browser origins.
    # Comma-separated; when set, every /api route needs one of these keys.
    api_keys: str | None = None
    # Per API key, or per client address when keys are off; 0 turns a limit off.
    rate_limit_uploads_per_minute: int = Field(default=60, ge=0)
    rate_limit_requests_per_minute: int = Field(default=1200, ge=0)
    # Comma-separated origins allowed to call the API from a browser.
    cors_origins: str | None = None

    # What the service tells its operators.
    log_format: LogFormat = "console"
    # When set, each image worker host serves its Prometheus metrics on this port.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # When set, `make run` also starts Flower (Celery's monitor) on this port.
    flower_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("webhook_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: str | None) -> str | None:
        # An empty value (`WEBHOOK_SECRET=` in .env) means unset: deliveries are not signed.
        if not value:
            return None
        return standard_webhooks_secret(value)

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Self:
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("S3_BUCKET must be set when STORAGE_BACKEND=s3")
        return self

    @property
    def api_key_list(self) -> list[str]:
        return comma_separated(self.api_keys)

    @property
    def cors_origin_list(self) -> list[str]:
        return comma_separated(self.cors_origins)

    @property
    def base_url(self) -> str:
        """Absolute base of every URL the service hands out, without a trailing slash."""
        return (self.public_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    def api_url(self, path: str) -> str:
        """The absolute URL of an API path (`status/ID`), as both services hand it out."""
        return f"{self.base_url}{API_PREFIX}/{path}"

    def download_url(self, request_id: str) -> str:
        return self.api_url(f"download/{request_id}")

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    def products_at_once(self) -> int:
        """Products an image worker works on at once: WORKER_CONCURRENCY, or eight per core.

        Eight, so that while most wait on image hosts 200 ms away, the codec processes (one
        per core) always have an image ready."""
        return 8 * (os.cpu_count() or 1) if self.worker_concurrency is None else self.worker_concurrency

    def images_at_once(self) -> int:
        """Images an image worker has under way at once: DOWNLOAD_CONCURRENCY for every product it holds."""
        return self.products_at_once() * self.download_concurrency

    def codec_processes(self) -> int:
        """CODEC_CONCURRENCY, or one per core."""
        return self.codec_concurrency or os.cpu_count() or 1


def comma_separated(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def standard_webhooks_secret(value: str) -> str:
    """`value` if it is a Standard Webhooks secret (`whsec_` and base64); ValueError saying why if not.

    The signing library is lenient (it drops characters that are not base64 and signs
    without the prefix), so a typo would silently sign with another key: the form is
    checked strictly here, then the library itself must accept the secret.
    """
    encoded = value.removeprefix(WEBHOOK_SECRET_PREFIX)
    if encoded == value:
        raise ValueError(f"must be a Standard Webhooks secret: {WEBHOOK_SECRET_PREFIX} followed by base64")
    try:
        base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"the part after {WEBHOOK_SECRET_PREFIX} is not base64") from None
    try:
        Webhook(value)
    except Exception as error:  # noqa: BLE001 - whatever the library refuses, say why
        raise ValueError(f"not a usable Standard Webhooks secret: {error}") from None
    return value


def invalid_settings(error: ValidationError) -> list[str]:
    """One line per bad setting, named by its environment variable; never its value (it may be a secret)."""
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        # A validator's own ValueError reads better without pydantic's "Value error, " prefix.
        cause = problem.get("ctx", {}).get("error")
        message = str(cause) if isinstance(cause, ValueError) else problem["msg"]
        # A check across settings names them in its message; one of a single setting is named here.
        lines.append(f"{str(problem['loc'][0]).upper()}: {message}" if problem["loc"] else message)
    return lines


@lru_cache
def get_settings() -> Settings:
    return Settings()
