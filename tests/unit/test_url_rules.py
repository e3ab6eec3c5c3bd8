"""URL rules: address literals read as the resolver reads them, credentials redacted, webhook URLs checked."""

import ipaddress
import socket

import pytest

from api_service.validation import webhook_url_problem
from shared.settings import Settings
from shared.url_rules import literal_address, redact_credentials


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.000.000.001", "127.0.0.1"),
        ("0300.0250.0.1", "192.168.0.1"),
        ("0", "0.0.0.0"),
        ("127。0。0。1", "127.0.0.1"),  # ideographic full stops: httpx maps them to "."
        ("127．0．0．1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ],
)
def test_an_address_literal_is_read_as_the_resolver_reads_it(host: str, address: str) -> None:
    assert literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "host",
    [
        "img.example.com",
        "localhost",
        "08.0.0.1",
        "4294967296",
        "1.2.3.4.5",
        "0x",
        "1e2",
        "127.0.0.1.",
        "",
        "١٢٧.٠.٠.١",
        "127.0.0.1 junk",
    ],
)
def test_a_name_or_a_malformed_literal_is_not_an_address(host: str) -> None:
    assert literal_address(host) is None


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.1", "08.0.0.1", "1.2.3.4.5"])
def test_literal_address_agrees_with_the_system_resolver(host: str) -> None:
    try:
        resolved = socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[0][4][0]
    except socket.gaierror:
        resolved = None
    address = literal_address(host)
    assert (str(address) if address else None) == resolved


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:hunter2@img.example.com/a.jpg", "https://user:***@img.example.com/a.jpg"),
        ("https://user:@img.example.com/a.jpg", "https://user:***@img.example.com/a.jpg"),
        ("https://user:p@ss:w@img.example.com:8443/a.jpg?x=1", "https://user:***@img.example.com:8443/a.jpg?x=1"),
        ("https://ghp_token123@img.example.com/a.jpg", "https://***@img.example.com/a.jpg"),
        ("https://:hunter2@img.example.com/", "https://***@img.example.com/"),
        ("https://user:hunter2@[::1/a.jpg", "https://user:***@[::1/a.jpg"),  # urlsplit refuses it
        ("https://user:hunter2@img.example.com", "https://user:***@img.example.com"),
    ],
)
def test_credentials_are_redacted(url: str, shown: str) -> None:
    assert redact_credentials(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://img.example.com/a.jpg",
        "https://img.example.com/a@b.jpg",
        "https://img.example.com/?to=a@b",
        "https://img.example.com/#a@b",
        "mailto:someone@example.com",
        "not a url",
    ],
)
def test_a_url_without_credentials_is_left_as_it_is(url: str) -> None:
    assert redact_credentials(url) == url


PRIVATE = Settings.load(allow_private_networks=False)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1/hook", "127.0.0.1 is loopback"),
        ("http://127.1/hook", "127.1 (127.0.0.1) is loopback"),
        ("http://2130706433/hook", "2130706433 (127.0.0.1) is loopback"),
        ("http://0x7f000001/hook", "0x7f000001 (127.0.0.1) is loopback"),
        ("http://0177.0.0.1/hook", "0177.0.0.1 (127.0.0.1) is loopback"),
        ("http://0300.0250.0.1/hook", "0300.0250.0.1 (192.168.0.1) is private"),
        ("http://[::1]:8080/hook", "::1 is loopback"),
    ],
)
def test_a_webhook_to_a_private_literal_is_refused_in_every_form(url: str, shown: str) -> None:
    assert webhook_url_problem(url, PRIVATE) == f"webhook URL points to a blocked address: {shown}"


@pytest.mark.parametrize("url", ["https://shop.example.com/hooks", "http://8.8.8.8/hook", "http://134744072/hook"])
def test_a_webhook_to_a_name_or_a_public_literal_passes(url: str) -> None:
    assert webhook_url_problem(url, PRIVATE) is None


def test_private_literals_pass_when_private_networks_are_allowed() -> None:
    assert webhook_url_problem("http://127.1/hook", Settings.load(allow_private_networks=True)) is None
