"""Every setting of the service, grouped by concern, read from the environment and `.env`.

Each group is a pydantic-settings class of its own; a field's alias is its environment variable
(matched ignoring case), so the names stay flat (`JPEG_QUALITY`, `DOWNLOAD_ATTEMPTS`) while the
code asks its group (`settings.codec.quality`, `settings.download.attempts`). A module takes the
group it needs, not a copy of it. Limits that depend on each other are derived in one place
(`Deadlines`) and checked when a process starts, with every bad setting named at once.
`docs/configuration.md` is generated from these classes (`make docs`), so it cannot drift.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.config import JsonDict
from pydantic_settings import BaseSettings, SettingsConfigDict
from standardwebhooks import Webhook

MiB = 1024 * 1024
LogFormat = Literal["console", "json"]
API_PREFIX = "/api/v1"
WEBHOOK_SECRET_PREFIX = "whsec_"
ENV_FILE = ".env"


def setting(default: Any, env: str, description: str, *, shown: str | None = None, **constraints: Any) -> Any:
    """A field read from the environment variable `env`; `shown` is its default as the docs say it (Markdown)."""
    extra: JsonDict | None = {"shown_default": shown} if shown is not None else None
    return Field(default, validation_alias=env.lower(), description=description, json_schema_extra=extra, **constraints)


class Group(BaseSettings):
    """One concern's settings. Frozen: a process reads them once, at start."""

    model_config = SettingsConfigDict(env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", frozen=True)
    heading: ClassVar[str]  # the group's title in docs/configuration.md


class ServiceSettings(Group):
    """Where the service runs, what it talks to, and where it keeps its data."""

    heading: ClassVar[str] = "Service"

    api_host: str = setting("127.0.0.1", "API_HOST", "where `make run` serves the API")
    api_port: int = setting(8000, "API_PORT", "the API's port", ge=1, le=65535)
    public_base_url: str | None = setting(
        None,
        "PUBLIC_BASE_URL",
        "absolute base of every URL the service hands out",
        shown="`http://{API_HOST}:{API_PORT}`",
    )
    data_dir: Path = setting(
        Path("./data"),
        "DATA_DIR",
        "embedded database files (`mongodb/`, `redis/`), output images (`media/`), run files (`run/`)",
        shown="`./data`",
    )
    mongodb_url: str | None = setting(None, "MONGODB_URL", "an external MongoDB", shown="unset: embedded server")
    redis_url: str | None = setting(None, "REDIS_URL", "an external Redis", shown="unset: embedded server")
    mongodb_database: str = setting("image_service", "MONGODB_DATABASE", "database name")

    @property
    def base_url(self) -> str:
        """Absolute base of every URL the service hands out, without a trailing slash."""
        return (self.public_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"


class ApiSettings(Group):
    """Who may call the API, how often, from which browser origins, and how fresh its answers are."""

    heading: ClassVar[str] = "API"

    api_keys: str | None = setting(
        None,
        "API_KEYS",
        "comma-separated keys; when set, every `/api` route needs one "
        "(`Authorization: Bearer KEY` or `X-API-Key: KEY`)",
    )
    rate_limit_uploads_per_minute: int = setting(
        60, "RATE_LIMIT_UPLOADS_PER_MINUTE", "uploads a minute per API key (or client address); `0` turns it off", ge=0
    )
    rate_limit_requests_per_minute: int = setting(
        1200, "RATE_LIMIT_REQUESTS_PER_MINUTE", "API calls a minute per API key (or client address); `0` turns it off",
        ge=0,
    )  # fmt: skip
    cors_origins: str | None = setting(
        None, "CORS_ORIGINS", "comma-separated origins allowed to call the API from a browser"
    )
    status_cache_seconds: float = setting(
        0.5,
        "STATUS_CACHE_SECONDS",
        "a status answer is shared by every poller of the request for this long (longer when the read is "
        "expensive, but never so long that an answer is over 2 s old); `0` turns it off",
        ge=0,
        le=2,  # CONTRACT §4: an answer shows the stored state as of at most 2 s before it was asked for
    )
    status_cache_max_bytes: int = setting(
        32 * MiB,
        "STATUS_CACHE_MAX_BYTES",
        "memory for shared status answers per API process; the least recently used go first",
        shown="`33554432` (32 MiB)",
        ge=0,
    )

    @property
    def key_list(self) -> list[str]:
        return comma_separated(self.api_keys)

    @property
    def cors_origin_list(self) -> list[str]:
        return comma_separated(self.cors_origins)


class UploadLimits(Group):
    """What one upload may hold."""

    heading: ClassVar[str] = "Upload limits"

    max_upload_bytes: int = setting(
        10 * MiB, "MAX_UPLOAD_BYTES", "larger uploads are refused with `413` while they stream in",
        shown="`10485760` (10 MiB)", ge=1,
    )  # fmt: skip
    max_products: int = setting(10_000, "MAX_PRODUCTS", "more products: `413`", ge=1)
    max_images_per_request: int = setting(
        20_000,
        "MAX_IMAGES_PER_REQUEST",
        "more image URLs in one file: `413` (keeps the request document under 16 MB)",
        ge=1,
    )
    max_images_per_product: int = setting(
        100, "MAX_IMAGES_PER_PRODUCT", "more image URLs in one product: a `400` row error naming its line", ge=1
    )
    max_url_length: int = setting(2048, "MAX_URL_LENGTH", "a longer image or webhook URL is a `400`", ge=16)
    max_product_name_length: int = setting(255, "MAX_PRODUCT_NAME_LENGTH", "a longer name is a `400`", ge=1)
    max_reported_errors: int = setting(100, "MAX_REPORTED_ERRORS", "CSV errors listed in one answer", ge=1)


class NetworkSettings(Group):
    """Which addresses the service may connect to, for images and webhooks alike."""

    heading: ClassVar[str] = "Network"

    allow_private_networks: bool = setting(
        False,
        "ALLOW_PRIVATE_NETWORKS",
        "allow image and webhook URLs that resolve to loopback, private or link-local addresses",
    )


class DownloadSettings(Group):
    """How an image is fetched, and the limits that stop a hostile image host."""

    heading: ClassVar[str] = "Downloads"

    connect_timeout_seconds: float = setting(
        5.0, "DOWNLOAD_CONNECT_TIMEOUT_SECONDS", "connecting to an image host", gt=0
    )
    total_timeout_seconds: float = setting(
        30.0,
        "DOWNLOAD_TOTAL_TIMEOUT_SECONDS",
        "wall-clock limit of one download attempt, connect to the last body byte, headers and redirects "
        "included, however slowly the host sends",
        gt=0,
    )
    max_bytes: int = setting(
        25 * MiB, "DOWNLOAD_MAX_BYTES", "larger images are refused (from `Content-Length`, and while streaming)",
        shown="`26214400` (25 MiB)", ge=1,
    )  # fmt: skip
    max_redirects: int = setting(5, "DOWNLOAD_MAX_REDIRECTS", "redirects followed, each target checked again", ge=0)
    attempts: int = setting(3, "DOWNLOAD_ATTEMPTS", "attempts for connection errors, timeouts, `429` and `5xx`", ge=1)
    backoff_seconds: float = setting(
        0.5, "DOWNLOAD_BACKOFF_SECONDS", "base of the jittered exponential backoff between attempts", ge=0
    )
    concurrency: int = setting(
        8,
        "DOWNLOAD_CONCURRENCY",
        "images of one product fetched at once, each held until it is compressed and stored (an image worker "
        "holds at most `WORKER_CONCURRENCY` × this many bodies); also a re-import batch's checks in flight",
        ge=1,
        le=64,
    )
    # The longest wait for any single read: it bounds how far a stalled server can push an attempt
    # past its deadline's check. Not a setting: the deadline is what the contract promises.
    read_timeout_seconds: ClassVar[float] = 10.0
    # A longer Retry-After than this is shortened to it: a worker should not sleep for long.
    max_retry_after_seconds: ClassVar[float] = 10.0


class CodecSettings(Group):
    """How images are encoded, what is refused as a bomb, and the processes that do the work."""

    heading: ClassVar[str] = "Codec"

    quality: int = setting(50, "JPEG_QUALITY", "quality for JPEG and WebP output", ge=1, le=100)
    # Measured: ~9 % smaller JPEGs for ~1.4x the CPU per image (docs/architecture.md).
    jpeg_optimize: bool = setting(
        False, "JPEG_OPTIMIZE", "Huffman-optimised JPEGs: about 9 % smaller for about 1.4× the CPU per image"
    )
    png_optimize: bool = setting(
        False,
        "PNG_OPTIMIZE",
        "Pillow's PNG optimize (zlib level 9 and a filter search): 0–3 % smaller for 3–5× the CPU per PNG",
    )
    # Measured on 83 real PNGs (docs/architecture.md, the codec): those kept came back from Pillow at
    # 0.944-1.141 of their size (median 0.989) for 3.2x the CPU of decoding them.
    png_recompress_deflated: bool = setting(
        False,
        "PNG_RECOMPRESS_DEFLATED",
        "re-encode also the PNGs already deflated at zlib's default level or above with a filter chosen for "
        "each row, which are otherwise stored as they came: about 1 % smaller (at most 6 %) for about 4× "
        "the CPU per PNG",
    )
    max_pixels: int = setting(
        50_000_000, "MAX_IMAGE_PIXELS", "larger images are refused as decompression bombs, from the header", ge=1
    )
    max_frames: int = setting(500, "MAX_ANIMATION_FRAMES", "longer GIF / WebP / PNG animations are refused", ge=1)
    # Canvas x frames: every frame is decoded at the full canvas size, so a small file can cost this much.
    max_animation_pixels: int = setting(
        200_000_000,
        "MAX_ANIMATION_PIXELS",
        "GIF / WebP / PNG animations whose canvas width × height × frame count is larger are refused as "
        "decompression bombs, before any frame is decoded",
        ge=1,
    )
    concurrency: int | None = setting(
        None,
        "CODEC_CONCURRENCY",
        "codec processes of an image worker, each decoding and encoding one image at a time (bounds the "
        "decoded pictures held, hence memory)",
        shown="one per core it may use",
        ge=1,
        le=64,
    )
    timeout_seconds: float = setting(
        120.0,
        "CODEC_TIMEOUT_SECONDS",
        "a codec process working on one image for longer is killed and replaced, and that image fails",
        gt=0,
    )

    @property
    def processes(self) -> int:
        """CODEC_CONCURRENCY, or one per core."""
        return self.concurrency or usable_cores()


class WebhookSettings(Group):
    """Standard Webhooks signing, and how deliveries are attempted and retried."""

    heading: ClassVar[str] = "Webhooks"

    secret: str | None = setting(
        None,
        "WEBHOOK_SECRET",
        "a Standard Webhooks secret (`whsec_` followed by standard base64); when set, every delivery is signed",
    )
    retry_base_seconds: float = setting(
        5.0, "WEBHOOK_RETRY_BASE_SECONDS", "first delay between delivery attempts; it doubles each time", ge=0
    )
    max_attempts: int = setting(8, "WEBHOOK_MAX_ATTEMPTS", "attempts before a delivery is given up", ge=1, le=50)
    timeout_seconds: float = setting(
        10.0,
        "WEBHOOK_TIMEOUT_SECONDS",
        "wall-clock limit of one delivery attempt, connect to the last byte of the answer read, however slowly "
        "the receiver sends",
        gt=0,
    )
    # Threads of their own worker, mostly waiting on other people's servers.
    concurrency: int = setting(
        32, "WEBHOOK_CONCURRENCY", "deliveries at once (threads of the webhook worker)", ge=1, le=256
    )

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: str | None) -> str | None:
        # An empty value (`WEBHOOK_SECRET=` in .env) means unset: deliveries are not signed.
        if not value:
            return None
        return standard_webhooks_secret(value)


class ReuseSettings(Group):
    """Re-imports: what the service remembers of the images it fetched, to reuse what did not change."""

    heading: ClassVar[str] = "Re-imports"

    outputs: bool = setting(
        True,
        "REUSE_OUTPUTS",
        "remember sources and reuse outputs across requests (conditional requests, unchanged bodies); "
        "`false` processes every image every time",
    )
    memory_days: float = setting(
        30.0,
        "REUSE_MEMORY_DAYS",
        "a remembered source not used for this long is forgotten (fractions allowed)",
        gt=0,
    )
    batch_images: int = setting(
        100,
        "REUSE_BATCH_IMAGES",
        "a re-imported product whose every image is remembered is checked with its host in a task of up to this "
        "many images, with others like it (in requests of at least this many images); what is not found "
        "unchanged within `DOWNLOAD_TOTAL_TIMEOUT_SECONDS` is processed as any product",
        ge=1,
    )


class StorageSettings(Group):
    """Where output images are kept: files under DATA_DIR/media, or an S3-compatible bucket."""

    heading: ClassVar[str] = "Storage"

    backend: Literal["local", "s3"] = setting(
        "local",
        "STORAGE_BACKEND",
        "`local` (files under `DATA_DIR/media`) or `s3` (an S3-compatible bucket; needed for several machines)",
    )
    s3_endpoint_url: str | None = setting(
        None,
        "S3_ENDPOINT_URL",
        "the S3-compatible store, as the service reaches it; credentials from `AWS_ACCESS_KEY_ID` / "
        "`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), or the instance's role",
        shown="unset (AWS)",
    )
    s3_public_endpoint_url: str | None = setting(
        None,
        "S3_PUBLIC_ENDPOINT_URL",
        "the store as clients reach it, when that differs (signed URLs name this host)",
        shown="`S3_ENDPOINT_URL`",
    )
    s3_bucket: str | None = setting(None, "S3_BUCKET", "the bucket; required with `STORAGE_BACKEND=s3`")
    s3_prefix: str = setting(
        "", "S3_PREFIX", "a folder in the bucket: `images` stores under `images/{request}/…`", shown="empty"
    )
    s3_region: str = setting("us-east-1", "S3_REGION", "the bucket's region")
    s3_presigned_url_seconds: int = setting(
        300, "S3_PRESIGNED_URL_SECONDS", "how long the signed URL `/media` redirects to stays valid",
        ge=1, le=7 * 24 * 3600,
    )  # fmt: skip
    retry_seconds: float = setting(
        600.0,
        "STORAGE_RETRY_SECONDS",
        "how long an image waits for storage that refuses writes (a full disk, an S3 store down or answering "
        "`5xx`), tried again with backoff, before it fails with `storage unavailable`",
        ge=0,
    )
    media_base_url: str | None = setting(
        None,
        "MEDIA_BASE_URL",
        "public base of stored images (a public bucket's folder or a CDN), used as `{MEDIA_BASE_URL}/{key}`",
        shown="unset: `{PUBLIC_BASE_URL}/media`",
    )

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Self:
        if self.backend == "s3" and not self.s3_bucket:
            raise ValueError("S3_BUCKET must be set when STORAGE_BACKEND=s3")
        return self


class WorkSettings(Group):
    """How much the workers take on, and how lost work is found and taken up again."""

    heading: ClassVar[str] = "Workers and recovery"

    worker_concurrency: int | None = setting(
        None,
        "WORKER_CONCURRENCY",
        "products an image worker started by `make run` or `make worker` works on at once (its threads); "
        "`0` on `make run` starts none (an API-only host)",
        shown="eight per core it may use",
        ge=0,
    )
    product_lease_seconds: float = setting(
        60.0,
        "PRODUCT_LEASE_SECONDS",
        "a product whose worker has not renewed its lease for this long is taken up again",
        gt=0,
    )
    product_max_attempts: int = setting(
        3, "PRODUCT_MAX_ATTEMPTS", "a product whose worker is lost this many times is marked failed", ge=1
    )
    merge_interval_seconds: float = setting(
        1.0,
        "MERGE_INTERVAL_SECONDS",
        "finished products are folded into the request document at most this often (longer for large requests)",
        gt=0,
    )
    sweep_interval_seconds: float = setting(
        10.0,
        "SWEEP_INTERVAL_SECONDS",
        "how often the sweeper looks for lost work and, with `RETENTION_DAYS`, for expired requests",
        gt=0,
    )
    stall_seconds: float = setting(
        120.0, "STALL_SECONDS", "a request with no progress for this long has its pending work enqueued again", gt=0
    )
    retention_days: float | None = setting(
        None,
        "RETENTION_DAYS",
        "final requests older than this (by `completed_at`; fractions allowed) are deleted with their images, "
        "as by `DELETE`, within a sweep",
        shown="unset: keep forever",
        gt=0,
    )
    products_queued_ahead: int = setting(
        4,
        "PRODUCTS_QUEUED_AHEAD",
        "products queued for the image workers ahead of a free thread; the rest wait in their request's own "
        "list and are released in turn, between owners and within an owner between its requests",
        ge=1,
    )

    @property
    def products_at_once(self) -> int:
        """WORKER_CONCURRENCY, or eight per core: while most wait on image hosts 200 ms away, the
        codec processes (one per core) always have an image ready."""
        return 8 * usable_cores() if self.worker_concurrency is None else self.worker_concurrency


class OperationsSettings(Group):
    """What the service tells its operators."""

    heading: ClassVar[str] = "Operations"

    log_format: LogFormat = setting(
        "console", "LOG_FORMAT", "`console` (for people) or `json` (one JSON object a line)"
    )
    worker_metrics_port: int | None = setting(
        None, "WORKER_METRICS_PORT", "when set, each image worker host serves Prometheus metrics there",
        ge=1, le=65535,
    )  # fmt: skip
    flower_port: int | None = setting(
        None, "FLOWER_PORT", "when set, `make run` also starts Flower, Celery's monitor, there", ge=1, le=65535
    )


GROUPS: dict[str, type[Group]] = {
    "service": ServiceSettings,
    "api": ApiSettings,
    "limits": UploadLimits,
    "network": NetworkSettings,
    "download": DownloadSettings,
    "codec": CodecSettings,
    "webhooks": WebhookSettings,
    "reuse": ReuseSettings,
    "storage": StorageSettings,
    "work": WorkSettings,
    "operations": OperationsSettings,
}


# -- limits that depend on each other ---------------------------------------------------------------

# A message the broker has handed out is given back to the queue if not acknowledged within this.
VISIBILITY_TIMEOUT_SECONDS = 3600.0
# A product's downloads, and its images' waits for a codec process, stop this long after it starts.
PRODUCT_DEADLINE_SECONDS = 840.0
# A spawned codec process imports Pillow and the codec before it says it is ready.
CODEC_START_SECONDS = 60.0
# Past its deadline, an image already in a codec process may still be compressed and stored this long.
STORE_GRACE_SECONDS = 60.0
# A webhook attempt's claim outlives the attempt by this, so that only a lost attempt loses it.
WEBHOOK_CLAIM_SLACK_SECONDS = 30.0


@dataclass(frozen=True)
class Deadlines:
    """The limits derived from the settings, and the check that those which must fit inside others do."""

    # A product's downloads, and its images' waits for a codec process, stop this long after it starts.
    product_seconds: float
    # How long past that deadline a product waits for images already given to a codec process.
    product_grace_seconds: float
    # How long a webhook attempt holds its delivery.
    webhook_claim_seconds: float

    @classmethod
    def of(cls, codec: CodecSettings, webhooks: WebhookSettings, storage: StorageSettings) -> Deadlines:
        # An image given to a codec process just before the deadline may still be decoded and
        # encoded, then wait for storage that refuses writes, then be stored.
        grace = codec.timeout_seconds + CODEC_START_SECONDS + storage.retry_seconds + STORE_GRACE_SECONDS
        return cls(
            product_seconds=PRODUCT_DEADLINE_SECONDS,
            product_grace_seconds=grace,
            webhook_claim_seconds=webhooks.timeout_seconds + WEBHOOK_CLAIM_SLACK_SECONDS,
        )

    @property
    def product_ends_within_seconds(self) -> float:
        """The longest a product task runs: its result is recorded soon after."""
        return self.product_seconds + self.product_grace_seconds

    def problems(self) -> list[str]:
        """A product must end well within the time its message may stay unacknowledged, or the
        broker would hand it to a second worker while the first still works on it."""
        if self.product_ends_within_seconds > VISIBILITY_TIMEOUT_SECONDS / 2:
            return [
                f"CODEC_TIMEOUT_SECONDS, STORAGE_RETRY_SECONDS: a product could then run "
                f"{self.product_ends_within_seconds:g} s, more than half the {VISIBILITY_TIMEOUT_SECONDS:g} s a "
                "task may stay unacknowledged"
            ]
        return []


class InvalidSettings(Exception):
    """Settings that cannot be used; `problems` has one line per bad setting, naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    """Every group of settings, and what is derived from more than one of them."""

    service: ServiceSettings
    api: ApiSettings
    limits: UploadLimits
    network: NetworkSettings
    download: DownloadSettings
    codec: CodecSettings
    webhooks: WebhookSettings
    reuse: ReuseSettings
    storage: StorageSettings
    work: WorkSettings
    operations: OperationsSettings

    @classmethod
    def load(cls, env_file: str | None = ENV_FILE, **values: Any) -> Settings:
        """The settings from the environment and `env_file`, `values` (named as the variables, in
        any case) taking precedence; `InvalidSettings` naming every bad one."""
        values = {name.lower(): value for name, value in values.items()}
        unknown = set(values) - {field.validation_alias for group in GROUPS.values() for field in fields_of(group)}
        if unknown:
            raise TypeError(f"not settings: {', '.join(sorted(unknown))}")
        groups: dict[str, Group] = {}
        problems: list[str] = []
        for name, group in GROUPS.items():
            try:
                groups[name] = group(_env_file=env_file, **values)  # type: ignore[call-arg]
            except ValidationError as error:
                problems += invalid_settings(error)
        if problems:
            raise InvalidSettings(problems)
        settings = cls(**groups)  # type: ignore[arg-type]
        if problems := settings.deadlines.problems():
            raise InvalidSettings(problems)
        return settings

    def replacing(self, **groups: Group) -> Settings:
        """These settings with some groups replaced (a test's, say)."""
        return Settings(**{**{name: getattr(self, name) for name in GROUPS}, **groups})

    @cached_property
    def deadlines(self) -> Deadlines:
        return Deadlines.of(self.codec, self.webhooks, self.storage)

    @property
    def base_url(self) -> str:
        return self.service.base_url

    def api_url(self, path: str) -> str:
        """The absolute URL of an API path (`status/ID`), as both services hand it out."""
        return f"{self.base_url}{API_PREFIX}/{path}"

    def download_url(self, request_id: str) -> str:
        return self.api_url(f"download/{request_id}")

    def images_at_once(self) -> int:
        """Images an image worker has under way at once: DOWNLOAD_CONCURRENCY for every product it holds."""
        return self.work.products_at_once * self.download.concurrency


def usable_cores() -> int:
    """The cores this process may run on: a worker host pinned with `taskset`, or a container given a
    cpuset, counts its own, not the machine's (os.cpu_count). Not a CPU quota (`docker --cpus`)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fields_of(group: type[Group]) -> list[Any]:
    """The group's settings (pydantic FieldInfo), in their order."""
    return list(group.model_fields.values())


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
    return Settings.load()
