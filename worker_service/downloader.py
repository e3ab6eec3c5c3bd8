"""Download an image over HTTP within bounded time, size and redirects, and retry what is worth retrying.

The contract: connect within 5 s, the whole attempt (connect, headers, body, redirects)
within 30 s of wall-clock time however slowly the host sends (libcurl enforces it:
`worker_service.curl_client`), at most 25 MiB, at most 5 redirects, and every address checked by the
address guard (after DNS resolution and at every redirect). Connection errors, timeouts,
429 and 5xx are retried (3 attempts in all, exponential backoff with full jitter, or a
short `Retry-After`), within the time the caller has left; everything else fails at once.

Every failure is a typed error in the service's one shape (shared/errors.py): `message`, for
the end user, which never says what a host name resolved to or how a connection failed inside
our network, `detail`, for the log, and whether it is `retryable`.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from types import TracebackType

import httpx

from shared import errors
from shared.address_guard import BlockedAddressError, UnresolvableHostError
from shared.errors import ServiceError
from shared.settings import DownloadSettings, NetworkSettings
from shared.store.sources import body_digest
from shared.url_rules import redact_credentials
from worker_service.curl_client import (
    BodyTooLarge,
    CurlClient,
    Exchange,
    Response,
    TransferFailed,
    TransferTimedOut,
)
from worker_service.deadline import Deadline

logger = logging.getLogger(__name__)

MiB = 1024 * 1024

REQUEST_HEADERS = {
    "User-Agent": "image-processing-service/0.1 (image downloader)",
    "Accept": "image/*, */*;q=0.8",
    # Compressed bodies could expand far beyond the size limit; ask for the bytes as they are.
    "Accept-Encoding": "identity",
}

RETRY_AFTER_STATUSES = frozenset({429, 503})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
NOT_MODIFIED = 304


class DownloadError(ServiceError):
    """A download failed; `message` says why, for the end user, and `detail` for the log."""

    # How many attempts `Downloader.fetch` made before this error ended them.
    attempts: int = 1


class HttpStatusError(DownloadError):
    """The server answered with a status other than 2xx."""

    def __init__(self, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}", retryable=status_code == 429 or status_code >= 500)
        self.status_code = status_code
        self.retry_after = retry_after


class DownloadTimeout(DownloadError):
    retryable = True


class ConnectionFailed(DownloadError):
    retryable = True


class TooLarge(DownloadError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"image larger than {_describe_size(max_bytes)}")


class TooManyRedirects(DownloadError):
    def __init__(self, max_redirects: int) -> None:
        super().__init__(f"more than {max_redirects} redirects")


class BlockedAddress(DownloadError):
    """The address guard refused the host's address; the address itself is for the log only."""

    def __init__(self, detail: str) -> None:
        super().__init__("address not allowed", detail=detail)


class HostUnreachable(DownloadError):
    """The host name does not resolve."""

    def __init__(self, detail: str) -> None:
        super().__init__("image host not reachable", detail=detail)


class OutOfTime(DownloadError, errors.OutOfTime):
    """The caller's time ran out before this image could be (tried again and) fetched."""


class InvalidUrl(DownloadError):
    pass


class CompressedResponse(DownloadError):
    def __init__(self, encoding: str) -> None:
        super().__init__(f"compressed response ({encoding}) not accepted")


@dataclass(frozen=True)
class Validators:
    """What a host said identifies the body it sent (`ETag`, `Last-Modified`): asked back with
    `If-None-Match` / `If-Modified-Since`, a host answers `304 Not Modified` when it is unchanged."""

    etag: str | None = None
    last_modified: str | None = None

    def conditions(self) -> dict[str, str]:
        conditions = {}
        if self.etag:
            conditions["If-None-Match"] = self.etag
        if self.last_modified:
            conditions["If-Modified-Since"] = self.last_modified
        return conditions


@dataclass(frozen=True)
class Download:
    data: bytes  # empty when not modified
    attempts: int  # 1 unless transient errors were retried
    validators: Validators = Validators()
    not_modified: bool = False  # the host answered 304 to the validators it was given

    def digest(self) -> str:
        """What the re-import memory knows the body by (shared/store/sources.py)."""
        return body_digest(self.data)


@dataclass(frozen=True)
class Check:
    """What a host answered of a remembered source: `304` (`not_modified`), or a body, of which only
    its digest and size are kept; the validators it sent, and how long it took."""

    not_modified: bool
    validators: Validators
    digest: str | None  # of the body; None after a 304
    bytes_in: int
    attempts: int
    download_ms: float

    @staticmethod
    def of(download: Download, download_ms: float, digest: str | None = None) -> Check:
        """The check a download makes; its body's `digest`, if the caller has it already."""
        if not download.not_modified and digest is None:
            digest = download.digest()
        return Check(download.not_modified, download.validators, None if download.not_modified else digest,
                     len(download.data), download.attempts, download_ms)  # fmt: skip


@dataclass(frozen=True)
class _Answer:
    data: bytes
    validators: Validators
    not_modified: bool = False


class Downloader:
    """Fetches images; safe to share between threads."""

    def __init__(self, limits: DownloadSettings, network: NetworkSettings) -> None:
        self._limits = limits
        self._client = CurlClient(
            allow_private=network.allow_private_networks,
            connect_timeout=limits.connect_timeout_seconds,
            read_timeout=limits.read_timeout_seconds,
            max_bytes=limits.max_bytes,
        )

    def fetch(self, url: str, not_after: float | None = None, validators: Validators | None = None) -> Download:
        """The body of `url`, retried on retryable errors; raises the last `DownloadError`,
        its `attempts` set.

        `not_after` (monotonic time) ends every attempt and wait there, and then `OutOfTime`.
        With `validators`, the request is conditional: a `304` is a Download that is `not_modified`.
        """
        parsed = parse_http_url(url)
        headers = {**REQUEST_HEADERS, **(validators.conditions() if validators else {})}
        attempt = 1
        while True:
            try:
                answer = self._fetch_once(parsed, _time_until(not_after), headers)
                return Download(answer.data, attempt, answer.validators, answer.not_modified)
            except DownloadError as error:
                error.attempts = attempt
                if not error.retryable or attempt >= self._limits.attempts:
                    raise
                delay = self._delay_before_retry(error, attempt)
                if delay >= _time_until(not_after):
                    raise
                logger.info("retrying %s in %.2f s after: %s", redact_credentials(url), delay, error.detail)
                time.sleep(delay)
                attempt += 1

    def check_many(
        self, checks: list[tuple[str, Validators | None]], at_once: int, not_after: float
    ) -> list[Check | None]:
        """Each URL asked once, conditionally with its validators, `at_once` under way, all driven
        by this thread (not a thread each) and all ended by `not_after` (monotonic): a `Check` where
        the host answered with the image (`2xx`, or `304` to its conditions), None where anything
        else happened (an invalid URL, a redirect, an error, a limit), for the caller to `fetch`
        that image as usual, with its retries, redirects and errors. A body is hashed as it ends
        and not kept, so a batch holds no more than one exchange's bodies at a time."""
        exchanges: list[Exchange] = []
        places: list[int] = []
        for place, (url, validators) in enumerate(checks):
            try:
                parsed = parse_http_url(url)
            except InvalidUrl:
                continue
            headers = {**REQUEST_HEADERS, **(validators.conditions() if validators else {})}
            exchanges.append(Exchange(str(parsed), parsed.host, _port(parsed), headers))
            places.append(place)
        seconds = min(self._limits.total_timeout_seconds, _time_until(not_after))
        answers = self._client.get_many(exchanges, at_once, seconds, _checked) if seconds > 0 else []
        found: list[Check | None] = [None] * len(checks)
        for place, answer in zip(places, answers, strict=False):
            found[place] = answer if isinstance(answer, Check) else None
        return found

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _delay_before_retry(self, error: DownloadError, failed_attempts: int) -> float:
        if isinstance(error, HttpStatusError) and error.retry_after is not None:
            return min(error.retry_after, self._limits.max_retry_after_seconds)
        return self._limits.backoff_seconds * 2.0 ** (failed_attempts - 1) * random.random()

    def _fetch_once(self, url: httpx.URL, time_left: float, headers: dict[str, str]) -> _Answer:
        if time_left <= 0:
            raise OutOfTime()
        attempt = Deadline(min(self._limits.total_timeout_seconds, time_left))
        try:
            return self._follow_redirects(url, headers, attempt)
        except BlockedAddressError as error:
            raise BlockedAddress(str(error)) from error
        except UnresolvableHostError as error:
            raise HostUnreachable(str(error)) from error
        except BodyTooLarge:
            raise TooLarge(self._limits.max_bytes) from None
        except TransferTimedOut as error:
            raise self._timeout_error(error, attempt, time_left) from None
        except TransferFailed as error:
            # Past the deadline, whatever broke the exchange was the limit cutting it.
            if attempt.expired():
                raise self._timeout_error(error, attempt, time_left) from None
            raise _connection_failed(error) from None

    def _follow_redirects(self, url: httpx.URL, headers: dict[str, str], attempt: Deadline) -> _Answer:
        # Redirects are followed here, each hop's host resolved and checked, and each within
        # what is left of the attempt's time.
        for _ in range(self._limits.max_redirects + 1):
            remaining = attempt.remaining()
            if remaining <= 0:
                raise TransferTimedOut("no time left for the next redirect", before_connecting=True)
            response = self._client.get(str(url), url.host, _port(url), headers, remaining)
            location = response.headers.get("location")
            if response.status not in REDIRECT_STATUSES or location is None:
                return _read_image(response, conditional="If-None-Match" in headers or "If-Modified-Since" in headers)
            url = parse_http_url(str(url.join(location)))
        raise TooManyRedirects(self._limits.max_redirects)

    def _timeout_error(self, error: TransferFailed, attempt: Deadline, time_left: float) -> DownloadError:
        detail = error.detail
        if attempt.expired():
            if time_left < self._limits.total_timeout_seconds:
                return OutOfTime()
            return DownloadTimeout(f"timed out after {self._limits.total_timeout_seconds:g} s", detail=detail)
        if error.before_connecting:
            return DownloadTimeout(
                f"connection timed out after {self._limits.connect_timeout_seconds:g} s", detail=detail
            )
        return DownloadTimeout(
            f"timed out: no data from the server for {self._limits.read_timeout_seconds:g} s", detail=detail
        )


def _read_image(response: Response, *, conditional: bool) -> _Answer:
    validators = Validators(response.headers.get("etag"), response.headers.get("last-modified"))
    # A 304 means "unchanged" only as the answer to a conditional request; unasked, it is an error.
    if response.status == NOT_MODIFIED and conditional:
        return _Answer(b"", validators, not_modified=True)
    _refuse_error_status(response)
    _refuse_compressed(response)
    return _Answer(response.body, validators)


def _checked(exchange: Exchange, response: Response) -> Check:
    """A check's answer, its body hashed; a status `fetch` would not take as the image raises."""
    conditional = "If-None-Match" in exchange.headers or "If-Modified-Since" in exchange.headers
    answer = _read_image(response, conditional=conditional)
    return Check.of(Download(answer.data, 1, answer.validators, answer.not_modified), round(response.seconds * 1000, 1))


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _time_until(not_after: float | None) -> float:
    return float("inf") if not_after is None else not_after - time.monotonic()


def _connection_failed(error: TransferFailed) -> ConnectionFailed:
    if error.before_connecting:
        return ConnectionFailed("image host not reachable", detail=error.detail)
    return ConnectionFailed("the connection to the image host broke off", detail=error.detail)


def parse_http_url(url: str) -> httpx.URL:
    """`url` parsed, if it is an absolute http or https URL; else `InvalidUrl`."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise InvalidUrl(f"invalid URL: {error}") from error
    if parsed.scheme not in ("http", "https"):
        raise InvalidUrl(f"unsupported URL scheme {parsed.scheme!r}: only http and https are fetched")
    if not parsed.host:
        raise InvalidUrl("invalid URL: no host")
    return parsed


def _refuse_error_status(response: Response) -> None:
    if 200 <= response.status < 300:
        return
    retry_after = None
    if response.status in RETRY_AFTER_STATUSES:
        retry_after = _retry_after_seconds(response.headers.get("retry-after"))
    raise HttpStatusError(response.status, retry_after)


def _retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` given in seconds; None when absent or an HTTP date, which is not worth parsing here."""
    seconds = _non_negative_int(value)
    return None if seconds is None else float(seconds)


def _refuse_compressed(response: Response) -> None:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise CompressedResponse(encoding)


def _non_negative_int(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    # isdigit() alone also accepts digits such as "²" that int() refuses.
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def _describe_size(size: int) -> str:
    if size >= MiB and size % MiB == 0:
        return f"{size // MiB} MiB"
    return f"{size} bytes"
