"""The address guard: which addresses are refused, and that the check holds at connection time."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from shared import address_guard
from shared.address_guard import (
    BlockedAddressError,
    UnresolvableHostError,
    address_problem,
    check_address,
    guarded_client,
    resolve,
)

TIMEOUT = httpx.Timeout(2.0)

BLOCKED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "the cloud metadata address"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fec0::1", "site-local"),
    ("100.64.0.1", "in the shared address space (CGNAT)"),
    ("100.127.255.254", "in the shared address space (CGNAT)"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("0.1.2.3", "not globally routable"),
    ("192.0.0.8", "reserved for IETF protocol assignments"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("100::1", "reserved"),
    ("64:ff9b:1::1", "reserved"),
    ("192.0.2.1", "a documentation address"),
    ("198.51.100.1", "a documentation address"),
    ("203.0.113.1", "a documentation address"),
    ("2001:db8::1", "a documentation address"),
    ("3fff::1", "a documentation address"),
    ("198.18.0.1", "a benchmarking address"),
    ("198.19.255.255", "a benchmarking address"),
    ("2001:2::1", "a benchmarking address"),
    # IPv4 hidden in IPv6: judged by the IPv4 address.
    ("::ffff:127.0.0.1", "IPv4-mapped 127.0.0.1, which is loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped 10.0.0.1, which is private"),
    ("::ffff:169.254.169.254", "IPv4-mapped 169.254.169.254, which is the cloud metadata address"),
    ("::ffff:0.0.0.0", "IPv4-mapped 0.0.0.0, which is unspecified"),
    ("::127.0.0.1", "IPv4-compatible 127.0.0.1, which is loopback"),
    ("::10.0.0.1", "IPv4-compatible 10.0.0.1, which is private"),
    ("::ffff:0:7f00:1", "IPv4-translated 127.0.0.1, which is loopback"),
    ("2002:7f00:1::1", "6to4 127.0.0.1, which is loopback"),
    ("2002:a9fe:a9fe::1", "6to4 169.254.169.254, which is the cloud metadata address"),
    ("64:ff9b::7f00:1", "NAT64 127.0.0.1, which is loopback"),
    ("64:ff9b::a00:1", "NAT64 10.0.0.1, which is private"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo client 127.0.0.1, which is loopback"),
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "Teredo server 10.0.0.1, which is private"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "::8.8.8.8",
    "2002:808:808::1",
    "64:ff9b::808:808",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, public server and client 8.8.8.8
]

# Never a destination, so refused even when private networks are allowed.
NEVER_ALLOWED = [
    "0.0.0.0",
    "::",
    "::ffff:0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "ff0e::1",
    "::ffff:239.1.1.1",
]

# Spellings of 127.0.0.1 and ::1 that a URL parser or resolver may accept.
LOOPBACK_URL_HOSTS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f.1",
    "0x7f000001",
    "017700000001",
    "localhost",
    "[::1]",
    "[::ffff:127.0.0.1]",
]


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_address_problem_names_the_reason(address: str, reason: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_have_no_problem(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None
    check_address(ipaddress.ip_address(address), allow_private=False)


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_check_address_refuses_non_public(address: str, reason: str) -> None:
    with pytest.raises(BlockedAddressError) as caught:
        check_address(ipaddress.ip_address(address), allow_private=False)
    assert caught.value.address == str(ipaddress.ip_address(address))
    assert caught.value.reason == reason
    assert str(caught.value) == f"blocked address: {caught.value.address} is {reason}"


def test_blocked_message_names_the_host_when_it_is_a_name() -> None:
    with pytest.raises(
        BlockedAddressError, match=r"^blocked address: intranet.test resolves to 10.0.0.5, which is private$"
    ):
        check_address(ipaddress.ip_address("10.0.0.5"), allow_private=False, host="intranet.test")


@pytest.mark.parametrize("address", [address for address, _ in BLOCKED if address not in NEVER_ALLOWED])
def test_allow_private_allows_non_public(address: str) -> None:
    check_address(ipaddress.ip_address(address), allow_private=True)


@pytest.mark.parametrize("address", NEVER_ALLOWED)
def test_allow_private_still_refuses_unspecified_and_multicast(address: str) -> None:
    with pytest.raises(BlockedAddressError):
        check_address(ipaddress.ip_address(address), allow_private=True)


def fake_getaddrinfo(answers: dict[str, list[list[str]]]) -> tuple[Callable[..., list[tuple]], dict[str, int]]:
    """A getaddrinfo that answers the given names with the next list of addresses (the last repeats).

    Other names are resolved for real.
    """
    real_getaddrinfo = socket.getaddrinfo
    calls: dict[str, int] = {}

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host not in answers:
            return real_getaddrinfo(host, port, family, type, proto, flags)
        turn = calls.get(host, 0)
        calls[host] = turn + 1
        addresses = answers[host][min(turn, len(answers[host]) - 1)]
        return [
            (socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in addresses
        ]

    return getaddrinfo, calls


def test_resolve_returns_every_address_once(monkeypatch: pytest.MonkeyPatch) -> None:
    getaddrinfo, _ = fake_getaddrinfo({"multi.test": [["8.8.8.8", "2606:4700::1111", "8.8.8.8"]]})
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert resolve("multi.test", 80) == ["8.8.8.8", "2606:4700::1111"]


def test_resolve_reports_an_unresolvable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_name(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    with pytest.raises(UnresolvableHostError, match=r"^could not resolve host example.invalid$"):
        resolve("example.invalid", 80)


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "017700000001"])
def test_resolve_normalises_numeric_spellings(host: str) -> None:
    assert resolve(host, 80) == ["127.0.0.1"]


class RecordingConnections:
    """Stands in for socket.create_connection: records where it was asked to connect, and fails."""

    def __init__(self) -> None:
        self.addresses: list[tuple[str, int]] = []

    def __call__(self, address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        self.addresses.append(address)
        raise OSError(101, "Network is unreachable (test)")


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> RecordingConnections:
    recorder = RecordingConnections()
    monkeypatch.setattr(socket, "create_connection", recorder)
    return recorder


def test_one_private_answer_among_several_refuses_the_name(
    monkeypatch: pytest.MonkeyPatch, connections: RecordingConnections
) -> None:
    getaddrinfo, _ = fake_getaddrinfo({"mixed.test": [["8.8.8.8", "10.0.0.1"]]})
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with (
        guarded_client(False, timeout=TIMEOUT, follow_redirects=False) as client,
        pytest.raises(BlockedAddressError) as caught,
    ):
        client.get("http://mixed.test/")
    assert str(caught.value) == "blocked address: mixed.test resolves to 10.0.0.1, which is private"
    assert connections.addresses == []


def test_connection_goes_only_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch, connections: RecordingConnections
) -> None:
    """DNS rebinding: the name answers a public address, then loopback. Only the checked answer is used."""
    getaddrinfo, calls = fake_getaddrinfo({"rebind.test": [["8.8.8.8"], ["127.0.0.1"]]})
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with guarded_client(False, timeout=TIMEOUT, follow_redirects=False) as client, pytest.raises(httpx.ConnectError):
        client.get("http://rebind.test:8080/")
        assert connections.addresses == [("8.8.8.8", 8080)]
        assert calls["rebind.test"] == 1

        # The next connection resolves again, and is checked again.
        with pytest.raises(BlockedAddressError, match=r"rebind.test resolves to 127.0.0.1"):
            client.get("http://rebind.test:8080/")
    assert connections.addresses == [("8.8.8.8", 8080)]


class RecordingStream(httpcore.NetworkStream):
    def __init__(self) -> None:
        self.server_hostname: str | None = None

    def start_tls(
        self, ssl_context: object, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self.server_hostname = server_hostname
        raise httpcore.ConnectError("stopped before the handshake (test)")

    def close(self) -> None:
        pass


def test_tls_verifies_the_hostname_not_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = RecordingStream()
    connected_to: list[str] = []

    def connect_tcp(self: object, host: str, *args: object, **kwargs: object) -> httpcore.NetworkStream:
        connected_to.append(host)
        return stream

    monkeypatch.setattr(address_guard, "resolve", lambda host, port: ["93.184.216.34"])
    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    with guarded_client(False, timeout=TIMEOUT, follow_redirects=False) as client, pytest.raises(httpx.ConnectError):
        client.get("https://images.example/cat.jpg")
    assert connected_to == ["93.184.216.34"]
    assert stream.server_hostname == "images.example"


class LocalServer:
    """An HTTP server on 127.0.0.1 that answers /ok with 200 and /redirect?to=URL with a 302; it counts requests."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                if self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.removeprefix("/redirect?to="))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"hello")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    yield local
    local.close()


def test_local_server_is_refused_unless_private_networks_are_allowed(server: LocalServer) -> None:
    url = f"http://127.0.0.1:{server.port}/ok"
    with (
        guarded_client(False, timeout=TIMEOUT, follow_redirects=False) as client,
        pytest.raises(BlockedAddressError, match=r"^blocked address: 127.0.0.1 is loopback$"),
    ):
        client.get(url)
    assert server.paths == []

    with guarded_client(True, timeout=TIMEOUT, follow_redirects=False) as client:
        response = client.get(url)
    assert (response.status_code, response.content) == (200, b"hello")


@pytest.mark.parametrize("host", LOOPBACK_URL_HOSTS)
def test_every_spelling_of_loopback_is_refused(server: LocalServer, host: str) -> None:
    with (
        guarded_client(False, timeout=TIMEOUT, follow_redirects=False) as client,
        pytest.raises(BlockedAddressError, match=r"loopback"),
    ):
        client.get(f"http://{host}:{server.port}/ok")
    assert server.paths == []


def test_blocked_address_error_is_not_wrapped_by_httpx(server: LocalServer) -> None:
    with guarded_client(False, timeout=TIMEOUT, follow_redirects=False) as client, pytest.raises(Exception) as caught:
        client.get(f"http://127.0.0.1:{server.port}/ok")
    assert type(caught.value) is BlockedAddressError
    assert not isinstance(caught.value, httpx.HTTPError)


def test_redirect_to_a_blocked_address_is_refused(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.1 plays a public server here; its redirect to 127.0.0.2 must still be checked."""
    real_address_problem = address_guard.address_problem

    def loopback_one_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        return None if str(ip) == "127.0.0.1" else real_address_problem(ip)

    monkeypatch.setattr(address_guard, "address_problem", loopback_one_is_public)
    target = f"http://127.0.0.2:{server.port}/ok"
    with guarded_client(False, timeout=TIMEOUT, follow_redirects=True, max_redirects=5) as client:
        assert client.get(f"http://127.0.0.1:{server.port}/ok").status_code == 200
        with pytest.raises(BlockedAddressError) as caught:
            client.get(f"http://127.0.0.1:{server.port}/redirect?to={target}")
    assert caught.value.address == "127.0.0.2"
    assert server.paths == ["/ok", f"/redirect?to={target}"]


def test_proxy_settings_in_the_environment_are_ignored(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/")
    with guarded_client(True, timeout=TIMEOUT, follow_redirects=False) as client:
        response = client.get(f"http://127.0.0.1:{server.port}/ok")
    assert response.content == b"hello"


def test_guarded_client_keeps_no_cookies():
    """One client serves every customer's downloads: a host's cookie must not come back to it later."""
    from tests.support.http_server import BackgroundServer, QuietHandler

    seen: list[str | None] = []

    class SetsCookie(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Cookie"))
            self.send_bytes(200, b"ok", headers={"Set-Cookie": "session=secret; Path=/"})

    class Server(BackgroundServer):
        handler = SetsCookie

    with Server() as server, guarded_client(True, timeout=httpx.Timeout(5), follow_redirects=False) as client:
        client.get(server.url)
        client.get(server.url)
    assert seen == [None, None]


def test_clients_share_one_ssl_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CA bundle is read once a process, not once a webhook attempt (20 ms of CPU each)."""
    built: list[object] = []
    create = httpx.create_ssl_context
    monkeypatch.setattr(httpx, "create_ssl_context", lambda *args, **kwargs: built.append(1) or create(*args, **kwargs))
    for _ in range(3):
        with guarded_client(True, timeout=TIMEOUT, follow_redirects=False):
            pass
    assert len(built) <= 1
