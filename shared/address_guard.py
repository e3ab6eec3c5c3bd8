"""Refuse outgoing HTTP connections to addresses that are not public (SSRF protection).

Used for image URLs and webhook URLs alike. The image downloads (libcurl) are handed the
addresses `checked_addresses` returned and nothing else (worker_service/curl_client.py). For
httpx (the webhooks), the check runs inside the connection step itself:
`GuardedNetworkBackend.connect_tcp` resolves the host once, checks every address the name
resolves to, and connects to exactly the address it checked. Either way there is no
window for DNS rebinding between check and connect, and every new connection, including
one made to follow a redirect, is checked.

TLS still verifies the original hostname: httpcore passes the request's host (or its
`sni_hostname` extension) as `server_hostname` to `start_tls`, not the address we
connected to (httpcore/_sync/connection.py, `HTTPConnection._connect`).

`BlockedAddressError` and `UnresolvableHostError` are deliberately not httpcore
exceptions: httpx only translates httpcore's own exceptions, so these two reach the
caller of `client.get(...)`/`client.send(...)` unchanged, not wrapped in
`httpx.ConnectError`.

With `allow_private=True` (for development and tests) every address is allowed except
unspecified (0.0.0.0, ::) and multicast ones, which are never a valid destination for an
HTTP connection, only a mistake or a trick.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import typing
from collections.abc import Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges whose name says more than "not globally routable". Checked in this order.
_NAMED_RANGES: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("169.254.169.254/32", "the cloud metadata address"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("fc00::/7", "private"),
        ("100.64.0.0/10", "in the shared address space (CGNAT)"),
        ("192.0.2.0/24", "a documentation address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("192.0.0.0/24", "reserved for IETF protocol assignments"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("2001:2::/48", "a benchmarking address"),
        ("fec0::/10", "site-local"),
    )
)

_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# The same as httpx's default, which httpx does not export.
_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

# Something that adds to every connection's behaviour (deadlines, say) and connects through the guard.
BackendWrapper = Callable[[httpcore.NetworkBackend], httpcore.NetworkBackend]


class BlockedAddressError(Exception):
    """A connection was refused because the address is not public."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        if host == address:
            message = f"blocked address: {address} is {reason}"
        else:
            message = f"blocked address: {host} resolves to {address}, which is {reason}"
        super().__init__(message)


class UnresolvableHostError(Exception):
    """The host name does not resolve to any address."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(f"could not resolve host {host}")


def embedded_ipv4(ip: IPAddress) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the name of the form that carries it."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    if ip.ipv4_mapped is not None:
        return [("IPv4-mapped", ip.ipv4_mapped)]
    if ip.sixtofour is not None:
        return [("6to4", ip.sixtofour)]
    if ip.teredo is not None:
        server, client = ip.teredo
        return [("Teredo server", server), ("Teredo client", client)]
    low_32_bits = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    if ip in _NAT64:
        return [("NAT64", low_32_bits)]
    if ip in _IPV4_TRANSLATED:
        return [("IPv4-translated", low_32_bits)]
    # :: and ::1 are the unspecified and loopback addresses, not IPv4-compatible ones.
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return [("IPv4-compatible", low_32_bits)]
    return []


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address, or None if it is one.

    An IPv6 address that embeds an IPv4 address is judged by the IPv4 address, since
    that is where the packets end up.
    """
    embedded = embedded_ipv4(ip)
    if embedded:
        for form, ipv4 in embedded:
            problem = address_problem(ipv4)
            if problem is not None:
                return f"{form} {ipv4}, which is {problem}"
        return None
    return _direct_problem(ip)


def _direct_problem(ip: IPAddress) -> str | None:
    for network, reason in _NAMED_RANGES:
        if ip in network:
            return reason
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


def is_never_a_destination(ip: IPAddress) -> bool:
    """Unspecified and multicast addresses, also in embedded form: refused even when private networks are allowed."""
    candidates = [ip, *(ipv4 for _, ipv4 in embedded_ipv4(ip))]
    return any(candidate.is_unspecified or candidate.is_multicast for candidate in candidates)


def check_address(ip: IPAddress, allow_private: bool, *, host: str | None = None) -> None:
    """Raise `BlockedAddressError` unless a connection to `ip` is allowed."""
    problem = address_problem(ip)
    if problem is None:
        return
    if allow_private and not is_never_a_destination(ip):
        return
    raise BlockedAddressError(host or str(ip), str(ip), problem)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to for a TCP connection, in resolver order, without duplicates."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnresolvableHostError(host) from error
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnresolvableHostError(host)
    return addresses


def checked_addresses(host: str, port: int, allow_private: bool) -> list[str]:
    """Every address `host` resolves to, once each is checked; `BlockedAddressError` if any is refused.

    Any, not only the one a connection would go to: a name that mixes public and private answers
    is not one we want to talk to.
    """
    addresses = resolve(host, port)
    for address in addresses:
        check_address(ipaddress.ip_address(address), allow_private, host=host)
    return addresses


class GuardedNetworkBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, but every TCP connection goes only to a checked address."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        *fallbacks, last = checked_addresses(host, port, self._allow_private)
        for address in fallbacks:
            try:
                return self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # Like socket.create_connection: try the next address.
        return self._backend.connect_tcp(last, port, timeout, local_address, socket_options)


class GuardedTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` whose connections go through `GuardedNetworkBackend`.

    `wrap_backend` may wrap the guard (it gets the guarded backend, never replaces it).
    No proxy and no Unix socket: both would bypass the address check. `trust_env` only
    decides, as in httpx, whether SSL_CERT_FILE / SSL_CERT_DIR choose the CA bundle.
    """

    def __init__(
        self,
        allow_private: bool,
        *,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _DEFAULT_LIMITS,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
        wrap_backend: BackendWrapper | None = None,
    ) -> None:
        if isinstance(verify, ssl.SSLContext):
            ssl_context = verify
        else:
            ssl_context = httpx.create_ssl_context(verify=verify, trust_env=trust_env)
        super().__init__(
            verify=ssl_context,
            http1=http1,
            http2=http2,
            limits=limits,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
        )
        # httpx.HTTPTransport has no parameter for the network backend, so replace the
        # pool it built with the same one on the guarded backend.
        backend: httpcore.NetworkBackend = GuardedNetworkBackend(allow_private)
        if wrap_backend is not None:
            backend = wrap_backend(backend)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
            network_backend=backend,
        )


@functools.cache
def verifying_ssl_context() -> ssl.SSLContext:
    """The CA bundle, loaded once a process and shared by every guarded client.

    Building a context reads the whole bundle, 20 ms of CPU, which every webhook attempt paid
    for its client (about 3 % of the machine in `make bench`'s burst). A context is safe to share
    between connections and threads; SSL_CERT_FILE and SSL_CERT_DIR are read when it is built.
    """
    return httpx.create_ssl_context()


def guarded_client(
    allow_private: bool,
    *,
    timeout: httpx.Timeout,
    follow_redirects: bool,
    max_redirects: int = 0,
    wrap_backend: BackendWrapper | None = None,
    limits: httpx.Limits = _DEFAULT_LIMITS,
) -> httpx.Client:
    """An `httpx.Client` that only connects to allowed addresses and ignores proxy settings from the environment.

    It keeps no cookies: one client serves every customer's downloads, and a cookie set
    by one image host must not follow a later request of another customer to it.
    """
    return httpx.Client(
        transport=GuardedTransport(
            allow_private, verify=verifying_ssl_context(), wrap_backend=wrap_backend, limits=limits
        ),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,
    )
