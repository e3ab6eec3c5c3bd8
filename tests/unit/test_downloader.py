"""The downloader against a scripted local HTTP server: limits, redirects, retries and their errors."""

from __future__ import annotations

import contextlib
import gc
import http.server
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable

import pytest

from shared import address_guard
from shared.settings import DownloadSettings, NetworkSettings, Settings
from tests.support.http_server import BackgroundServer, QuietHandler
from tests.support.scripted_server import (
    ScriptedServer,
    Step,
    declare_length_then_wait,
    redirect,
    reply,
    reply_without_length,
    slow_hosts,
    trickle,
)
from tests.support.settings import changed
from worker_service import curl_client
from worker_service.downloader import (
    BlockedAddress,
    CompressedResponse,
    ConnectionFailed,
    Download,
    Downloader,
    DownloadTimeout,
    HostUnreachable,
    HttpStatusError,
    InvalidUrl,
    OutOfTime,
    TooLarge,
    TooManyRedirects,
    Validators,
)

LIMITS = DownloadSettings(
    _env_file=None,
    download_connect_timeout_seconds=1.0,
    download_total_timeout_seconds=2.0,
    download_max_bytes=1000,
    download_max_redirects=3,
    download_attempts=3,
    download_backoff_seconds=0.01,
)
PRIVATE_ALLOWED = NetworkSettings(_env_file=None, allow_private_networks=True)
PRIVATE_REFUSED = NetworkSettings(_env_file=None, allow_private_networks=False)


def downloader_for(limits: DownloadSettings = LIMITS, network: NetworkSettings = PRIVATE_ALLOWED) -> Downloader:
    return Downloader(limits, network)


def download(url: str, limits: DownloadSettings = LIMITS, network: NetworkSettings = PRIVATE_ALLOWED) -> bytes:
    with downloader_for(limits, network) as downloader:
        return downloader.fetch(url).data


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_downloads_the_body(server: ScriptedServer) -> None:
    assert download(server.route("/cat.jpg", reply(body=b"\xff\xd8jpeg"))) == b"\xff\xd8jpeg"
    headers = server.request_headers[0]
    assert headers["Accept-Encoding"] == "identity"
    assert headers["User-Agent"].startswith("image-processing-service/")


def held_after(fetch_all: Callable[[], object]) -> int:
    """The bytes Python still holds once `fetch_all` has returned and its answers are dropped."""
    tracemalloc.start()
    try:
        fetch_all()
        gc.collect()
        return tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


BIG = os.urandom(4 * 2**20)
BIG_LIMITS = changed(LIMITS, max_bytes=8 * 2**20)


def test_no_body_is_kept_once_it_is_handed_over(server: ScriptedServer) -> None:
    # Every image thread keeps a libcurl handle, which keeps its last exchange's callbacks.
    url = server.route("/big.jpg", reply(body=BIG))
    with downloader_for(BIG_LIMITS) as downloader:
        downloader.fetch(url)  # the thread's handle and connection made
        assert held_after(lambda: downloader.fetch(url)) < 2**20


def test_no_body_is_kept_once_a_batch_s_checks_have_hashed_it(server: ScriptedServer) -> None:
    urls = [server.route(f"/big{i}.jpg", reply(body=BIG)) for i in range(3)]
    with downloader_for(BIG_LIMITS) as downloader:
        downloader.check_many([(urls[0], None)], 3, time.monotonic() + 10)
        assert (
            held_after(lambda: downloader.check_many([(url, None) for url in urls], 3, time.monotonic() + 10)) < 2**20
        )


def test_client_error_is_not_retried(server: ScriptedServer) -> None:
    with pytest.raises(HttpStatusError) as caught:
        download(server.route("/missing", reply(404)))
    assert (caught.value.message, caught.value.status_code, caught.value.retryable) == ("HTTP 404", 404, False)
    assert server.hits("/missing") == 1


def test_server_errors_are_retried_until_success(server: ScriptedServer) -> None:
    url = server.route("/flaky", reply(500), reply(500), reply(body=b"third time"))
    with downloader_for() as downloader:
        assert downloader.fetch(url) == Download(b"third time", attempts=3)
    assert server.hits("/flaky") == 3


def test_gives_up_after_the_last_attempt(server: ScriptedServer) -> None:
    with pytest.raises(HttpStatusError) as caught:
        download(server.route("/down", reply(503)))
    assert (caught.value.status_code, caught.value.retryable, caught.value.attempts) == (503, True, 3)
    assert server.hits("/down") == 3


def test_too_many_requests_is_retried(server: ScriptedServer) -> None:
    assert download(server.route("/busy", reply(429), reply(body=b"ok"))) == b"ok"
    assert server.hits("/busy") == 2


def test_retry_after_is_honoured(server: ScriptedServer) -> None:
    url = server.route("/later", reply(429, headers={"Retry-After": "1"}), reply(body=b"ok"))
    started = time.monotonic()
    assert download(url) == b"ok"
    assert 1.0 <= time.monotonic() - started < 1.8


def test_a_long_retry_after_is_shortened(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DownloadSettings, "max_retry_after_seconds", 0.2)
    url = server.route("/much-later", reply(503, headers={"Retry-After": "3600"}), reply(body=b"ok"))
    started = time.monotonic()
    assert download(url) == b"ok"
    assert 0.2 <= time.monotonic() - started < 1.0


def test_declared_length_over_the_limit_is_refused_before_the_body(server: ScriptedServer) -> None:
    # The server never sends the body: reading it would end in a timeout, not in TooLarge.
    url = server.route("/huge", declare_length_then_wait(10**9, seconds=3))
    started = time.monotonic()
    with pytest.raises(TooLarge, match=r"^image larger than 1000 bytes$"):
        download(url)
    assert time.monotonic() - started < 0.5
    assert server.hits("/huge") == 1


def test_body_over_the_limit_is_refused_while_streaming(server: ScriptedServer) -> None:
    with pytest.raises(TooLarge):
        download(server.route("/unsized", reply_without_length(b"x" * 5000)))
    assert server.hits("/unsized") == 1


def test_body_of_exactly_the_limit_is_accepted(server: ScriptedServer) -> None:
    assert download(server.route("/just-fits", reply_without_length(b"x" * 1000))) == b"x" * 1000


@pytest.mark.parametrize("misbehaviour", slow_hosts().values(), ids=slow_hosts().keys())
def test_a_slow_host_is_cut_at_the_deadline(server: ScriptedServer, misbehaviour: Step) -> None:
    url = server.route("/slow", misbehaviour)
    started = time.monotonic()
    with pytest.raises(DownloadTimeout, match=r"^timed out after 1 s$"):
        download(url, changed(LIMITS, total_timeout_seconds=1.0, attempts=1, max_bytes=10**6))
    assert 0.95 <= time.monotonic() - started < 1.4


def test_a_tls_handshake_fed_a_byte_at_a_time_is_cut_at_the_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def trickle_a_tls_record() -> None:
            connection, _ = listener.accept()
            with connection:
                # A TLS record header promising 16 KiB of handshake, then the bytes one by one.
                connection.sendall(b"\x16\x03\x03\x40\x00")
                with contextlib.suppress(OSError):
                    for _ in range(400):
                        connection.sendall(b"\x00")
                        time.sleep(0.02)

        threading.Thread(target=trickle_a_tls_record, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(DownloadTimeout, match=r"^timed out after 1 s$"):
            download(f"https://127.0.0.1:{port}/cat.jpg", changed(LIMITS, total_timeout_seconds=1.0, attempts=1))
        assert 1.0 <= time.monotonic() - started < 1.4


def test_a_pooled_connection_outlives_the_deadline_of_an_earlier_download(server: ScriptedServer) -> None:
    url = server.route("/again", reply(body=b"ok"))
    with downloader_for(changed(LIMITS, total_timeout_seconds=0.3)) as downloader:
        assert downloader.fetch(url).data == b"ok"
        time.sleep(0.5)  # the first download's deadline passes while its connection waits in the pool
        assert downloader.fetch(url).data == b"ok"


def test_no_attempt_or_wait_runs_past_the_callers_time(server: ScriptedServer) -> None:
    url = server.route("/always-slow", trickle(interval=0.05, count=200))
    started = time.monotonic()
    with downloader_for(changed(LIMITS, total_timeout_seconds=1.0, attempts=3)) as downloader, pytest.raises(OutOfTime):
        downloader.fetch(url, not_after=time.monotonic() + 1.5)
    assert 1.5 <= time.monotonic() - started < 1.9
    assert OutOfTime().message == "not finished within the product's time limit"


def test_a_timed_out_attempt_is_retried(server: ScriptedServer) -> None:
    url = server.route("/slow-once", trickle(interval=0.05, count=200), reply(body=b"ok"))
    assert download(url, changed(LIMITS, total_timeout_seconds=0.5)) == b"ok"
    assert server.hits("/slow-once") == 2


def test_redirects_within_the_limit_are_followed(server: ScriptedServer) -> None:
    server.route("/hop1", redirect(server.url("/hop2"), status=301))
    server.route("/hop2", redirect("/hop3", status=307))  # a relative Location
    server.route("/hop3", redirect(server.url("/final"), status=308))
    server.route("/final", reply(body=b"arrived"))
    assert download(server.url("/hop1")) == b"arrived"


def test_too_many_redirects_is_refused_and_not_retried(server: ScriptedServer) -> None:
    for hop in range(1, 5):
        server.route(f"/hop{hop}", redirect(f"/hop{hop + 1}"))
    server.route("/hop5", reply(body=b"never reached"))
    with pytest.raises(TooManyRedirects, match=r"^more than 3 redirects$"):
        download(server.url("/hop1"))
    assert [server.hits(f"/hop{hop}") for hop in range(1, 6)] == [1, 1, 1, 1, 0]


def test_redirect_to_another_scheme_is_refused(server: ScriptedServer) -> None:
    with pytest.raises(InvalidUrl, match=r"unsupported URL scheme 'ftp'"):
        download(server.route("/to-ftp", redirect("ftp://127.0.0.1/cat.jpg")))


def test_compressed_response_is_refused(server: ScriptedServer) -> None:
    url = server.route("/gzip", reply(body=b"\x1f\x8b...", headers={"Content-Encoding": "gzip"}))
    with pytest.raises(CompressedResponse, match=r"^compressed response \(gzip\) not accepted$"):
        download(url)
    assert server.hits("/gzip") == 1


def test_refused_connection_fails_after_every_attempt(resolutions: list[str]) -> None:
    with pytest.raises(ConnectionFailed) as caught:
        download(f"http://127.0.0.1:{closed_port()}/cat.jpg")
    assert caught.value.message == "image host not reachable"
    assert "Connection refused" in caught.value.detail
    assert caught.value.retryable
    assert resolutions == ["127.0.0.1"] * 3


def test_blocked_address_is_refused_and_not_retried(server: ScriptedServer, resolutions: list[str]) -> None:
    with pytest.raises(BlockedAddress) as caught:
        download(server.route("/cat.jpg", reply()), LIMITS, PRIVATE_REFUSED)
    assert caught.value.message == "address not allowed"
    assert caught.value.detail == "blocked address: 127.0.0.1 is loopback"
    assert not caught.value.retryable
    assert resolutions == ["127.0.0.1"]
    assert server.hits("/cat.jpg") == 0


def test_redirect_to_a_blocked_address_is_refused(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    real_address_problem = address_guard.address_problem
    monkeypatch.setattr(
        address_guard, "address_problem", lambda ip: None if str(ip) == "127.0.0.1" else real_address_problem(ip)
    )
    url = server.route("/to-metadata", redirect("http://169.254.169.254/latest/meta-data/"))
    with pytest.raises(BlockedAddress) as caught:
        download(url, LIMITS, PRIVATE_REFUSED)
    assert caught.value.detail == "blocked address: 169.254.169.254 is the cloud metadata address"


def test_unresolvable_host_is_refused_and_not_retried(monkeypatch: pytest.MonkeyPatch, resolutions: list[str]) -> None:
    def no_such_name(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    with pytest.raises(HostUnreachable) as caught:
        download("http://images.invalid/cat.jpg")
    assert (caught.value.message, caught.value.detail) == (
        "image host not reachable",
        "could not resolve host images.invalid",
    )
    assert resolutions == ["images.invalid"]


def test_a_socket_to_a_blocked_address_is_refused_even_past_the_resolution_check(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the checked resolution were skipped: libcurl's socket is checked again before it connects.
    monkeypatch.setattr(address_guard, "checked_addresses", lambda host, port, allow_private: ["127.0.0.1"])
    with pytest.raises(BlockedAddress) as caught:
        download(server.route("/cat.jpg", reply()), LIMITS, PRIVATE_REFUSED)
    assert caught.value.detail == "blocked address: 127.0.0.1 is loopback"
    assert server.hits("/cat.jpg") == 0


def test_a_resolution_is_kept_for_a_while_then_made_again(
    server: ScriptedServer, resolutions: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.route("/again", reply(body=b"ok"))
    with downloader_for() as downloader:
        downloader.fetch(url)
        downloader.fetch(url)
        assert resolutions == ["127.0.0.1"]
        monkeypatch.setattr(curl_client, "PIN_SECONDS", 0)
        downloader.fetch(url)
    assert resolutions == ["127.0.0.1"] * 2


class IPv6Host(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def test_a_name_whose_first_address_refuses_is_fetched_from_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        host = IPv6Host(("::1", 0), NotModifiedHost.handler)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    threading.Thread(target=host.serve_forever, daemon=True).start()
    try:
        # Nothing listens on 127.0.0.1 at that port; every address handed to libcurl is tried in turn.
        monkeypatch.setattr(address_guard, "resolve", lambda name, port: ["127.0.0.1", "::1"])
        assert download(f"http://images.example:{host.server_address[1]}/cat.jpg") == b"image"
    finally:
        host.shutdown()
        host.server_close()


def test_proxy_settings_in_the_environment_are_ignored(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy would make the connections the address guard checks go somewhere else.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port()}")
    assert download(server.route("/direct", reply(body=b"direct"))) == b"direct"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/cat.jpg", "file:///etc/passwd", "cat.jpg", "http:///cat.jpg", "http://[::1/"]
)
def test_invalid_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidUrl):
        download(url)


def test_one_downloader_serves_several_threads(server: ScriptedServer) -> None:
    url = server.route("/shared", reply(body=b"same"))
    with downloader_for() as downloader:
        results: list[bytes] = []
        threads = [threading.Thread(target=lambda: results.append(downloader.fetch(url).data)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [b"same"] * 8


def test_limits_come_from_the_settings() -> None:
    settings = Settings.load(env_file=None, allow_private_networks=True)
    limits = settings.download
    assert (
        limits.connect_timeout_seconds,
        limits.total_timeout_seconds,
        limits.max_bytes,
        limits.max_redirects,
        limits.attempts,
        limits.backoff_seconds,
        settings.network.allow_private_networks,
        settings.images_at_once(),
    ) == (
        5.0,
        30.0,
        25 * 1024 * 1024,
        5,
        3,
        0.5,
        True,
        8 * (os.cpu_count() or 1) * 8,
    )  # eight products per core, eight images each
    assert TooLarge(limits.max_bytes).message == "image larger than 25 MiB"


# Conditional requests: what a re-import asks of a host it has fetched from before.


def test_the_validators_of_an_answer_are_kept(server: ScriptedServer) -> None:
    url = server.route("/v.jpg", reply(body=b"jpeg", headers={"ETag": '"v1"', "Last-Modified": "Sun, 06 Dec 2026"}))
    with downloader_for() as downloader:
        download = downloader.fetch(url)
    assert download.validators == Validators('"v1"', "Sun, 06 Dec 2026")
    assert (download.data, download.not_modified) == (b"jpeg", False)


def test_a_conditional_request_answered_not_modified_downloads_nothing(server: ScriptedServer) -> None:
    url = server.route("/v.jpg", reply(304, b"", headers={"ETag": '"v1"'}))
    with downloader_for() as downloader:
        download = downloader.fetch(url, validators=Validators('"v1"', "Sun, 06 Dec 2026"))
    assert (download.not_modified, download.data, download.attempts) == (True, b"", 1)
    assert server.request_headers[0]["If-None-Match"] == '"v1"'
    assert server.request_headers[0]["If-Modified-Since"] == "Sun, 06 Dec 2026"


def test_a_changed_image_is_downloaded_whole_in_answer_to_the_condition(server: ScriptedServer) -> None:
    url = server.route("/v.jpg", reply(body=b"new", headers={"ETag": '"v2"'}))
    with downloader_for() as downloader:
        download = downloader.fetch(url, validators=Validators('"v1"'))
    assert (download.not_modified, download.data, download.validators.etag) == (False, b"new", '"v2"')


def test_the_conditions_follow_a_redirect(server: ScriptedServer) -> None:
    target = server.route("/moved.jpg", reply(304, b""))
    url = server.route("/v.jpg", redirect(target))
    with downloader_for() as downloader:
        assert downloader.fetch(url, validators=Validators('"v1"')).not_modified
    assert [headers.get("If-None-Match") for headers in server.request_headers] == ['"v1"', '"v1"']


def test_a_304_nobody_asked_for_is_an_error(server: ScriptedServer) -> None:
    with pytest.raises(HttpStatusError, match=r"^HTTP 304$"):
        download(server.route("/v.jpg", reply(304, b"")))


class NotModifiedHost(BackgroundServer):
    """An HTTP/1.1 host that keeps connections open and answers 304 to a conditional request."""

    class handler(QuietHandler):  # noqa: N801 - BackgroundServer's name for it
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.headers.get("If-None-Match"):
                self.send_bytes(304, b"", headers={"ETag": '"v1"'})
            else:
                self.send_bytes(200, b"image", "image/jpeg", headers={"ETag": '"v1"'})


def test_the_connection_of_a_304_is_kept_for_the_next_request(resolutions: list[str]) -> None:
    with NotModifiedHost() as host, downloader_for() as downloader:
        for _ in range(3):
            assert downloader.fetch(f"{host.url}/v.jpg", validators=Validators('"v1"')).not_modified
        assert downloader.fetch(f"{host.url}/v.jpg").data == b"image"
    assert resolutions == ["127.0.0.1"], "one connection, reused"
