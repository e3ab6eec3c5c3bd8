"""A re-import batch's checks (`Downloader.check_many`): many conditional requests driven by one
thread, each answered at its place, none past the caller's time, no body kept, every address checked."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler

import blake3
import pytest

from shared.settings import DownloadSettings, NetworkSettings
from tests.support.scripted_server import (
    ScriptedServer,
    Step,
    redirect,
    reply,
    reply_without_length,
    slow_hosts,
)
from tests.support.settings import changed
from tests.unit.test_downloader import LIMITS, PRIVATE_ALLOWED, PRIVATE_REFUSED, downloader_for
from worker_service.curl_client import CurlClient, Exchange, Response
from worker_service.downloader import Check, Validators

ASKED = Validators('"v1"', "Sun, 06 Dec 2026 10:00:00 GMT")


def check_many(
    urls: list[str],
    at_once: int = 4,
    seconds: float = 5.0,
    limits: DownloadSettings = LIMITS,
    network: NetworkSettings = PRIVATE_ALLOWED,
) -> list[Check | None]:
    with downloader_for(limits, network) as batch:
        return batch.check_many([(url, ASKED) for url in urls], at_once, time.monotonic() + seconds)


def test_each_url_is_asked_once_with_its_conditions_and_answered_at_its_place(server: ScriptedServer) -> None:
    urls = [
        server.route("/same.jpg", reply(304, b"", headers={"ETag": '"v1"'})),
        server.route("/changed.jpg", reply(body=b"new bytes", headers={"ETag": '"v2"'})),
        server.route("/gone.jpg", reply(404, b"not found")),
        server.route("/moved.jpg", redirect(server.route("/target.jpg", reply(304, b"")))),
        "ftp://images.test/a.jpg",
    ]

    same, changed, gone, moved, invalid = check_many(urls)

    assert same is not None and same.not_modified
    assert (same.validators, same.digest, same.bytes_in, same.attempts) == (Validators('"v1"'), None, 0, 1)
    assert changed is not None and not changed.not_modified
    assert changed.digest == "blake3:" + blake3.blake3(b"new bytes").hexdigest()
    assert changed.bytes_in == len(b"new bytes")
    assert changed.validators == Validators('"v2"')
    # An error, a redirect, an invalid URL: no check, for the image's own task to fetch as usual.
    assert (gone, moved, invalid) == (None, None, None)
    assert server.hits("/target.jpg") == 0
    assert [server.hits(path) for path in ("/same.jpg", "/changed.jpg", "/gone.jpg", "/moved.jpg")] == [1, 1, 1, 1]
    assert {headers["If-None-Match"] for headers in server.request_headers} == {'"v1"'}
    assert {headers["If-Modified-Since"] for headers in server.request_headers} == {ASKED.last_modified}


@pytest.mark.parametrize("misbehaviour", slow_hosts().values(), ids=slow_hosts().keys())
def test_slow_hosts_are_cut_at_the_callers_time_and_the_others_answered(
    server: ScriptedServer, misbehaviour: Step
) -> None:
    slow = [server.route(f"/slow{i}.jpg", misbehaviour) for i in range(3)]
    fine = [server.route(f"/fine{i}.jpg", reply(304, b"")) for i in range(3)]
    started = time.monotonic()

    checks = check_many([*slow, *fine], at_once=6, seconds=1.0, limits=changed(LIMITS, max_bytes=10**6))

    assert 0.95 <= time.monotonic() - started < 1.4
    assert checks[:3] == [None] * 3
    assert all(check is not None and check.not_modified for check in checks[3:])


def test_a_body_over_the_limit_is_abandoned_and_has_no_check(server: ScriptedServer) -> None:
    urls = [server.route("/huge.jpg", reply_without_length(b"x" * 5000)), server.route("/ok.jpg", reply(304, b""))]
    huge, ok = check_many(urls)
    assert huge is None
    assert ok is not None and ok.not_modified


def test_no_more_than_at_once_are_under_way(server: ScriptedServer) -> None:
    under_way, most = 0, 0
    counting = threading.Lock()

    def answer_slowly(handler: BaseHTTPRequestHandler) -> None:
        nonlocal under_way, most
        with counting:
            under_way += 1
            most = max(most, under_way)
        time.sleep(0.1)
        with counting:
            under_way -= 1
        reply(304, b"")(handler)

    urls = [server.route(f"/{i}.jpg", answer_slowly) for i in range(12)]
    checks = check_many(urls, at_once=3)
    assert all(check is not None and check.not_modified for check in checks)
    assert most == 3


def test_a_blocked_address_is_never_connected_to(server: ScriptedServer) -> None:
    url = server.route("/cat.jpg", reply(304, b""))
    assert check_many([url], network=PRIVATE_REFUSED) == [None]
    assert server.hits("/cat.jpg") == 0


def test_a_host_is_resolved_once_for_all_its_checks(server: ScriptedServer, resolutions: list[str]) -> None:
    urls = [server.route(f"/{i}.jpg", reply(304, b"")) for i in range(10)]
    assert all(check is not None for check in check_many(urls))
    assert resolutions == ["127.0.0.1"]


class Interrupted(BaseException):
    """As a worker's shutdown breaks off whatever its thread runs."""


def test_checks_broken_off_leave_the_threads_handles_ready_for_the_next(server: ScriptedServer) -> None:
    urls = [server.route(f"/{i}.jpg", reply(304, b"")) for i in range(6)]
    exchanges = [Exchange(url, "127.0.0.1", int(url.split(":")[2].split("/")[0]), {}) for url in urls]
    client = CurlClient(allow_private=True, connect_timeout=1.0, read_timeout=1.0, max_bytes=1000)

    def break_off(exchange: Exchange, response: Response) -> int:
        raise Interrupted

    with pytest.raises(Interrupted):
        client.get_many(exchanges, 3, 5.0, break_off)
    assert client.get_many(exchanges, 3, 5.0, lambda exchange, response: response.status) == [304] * 6
    client.close()
