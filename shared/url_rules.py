"""The rules for URLs a client sends, shared by the CSV reader, the webhook check and the logs.

Image URLs in the CSV and webhook URLs accept exactly the same forms. A host written as
an address literal is read the way the system resolver reads it, so that `127.1`,
`2130706433` and `0x7f000001` are known for the loopback address they are. Credentials
in a URL (`user:password@`) are never written to a log or shown in an answer.
"""

import ipaddress
import socket
import unicodedata
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REDACTED = "***"
# IDNA separates labels with these as well as ".", and HTTP clients (httpx) map them to
# "." before resolving: `127。0。0。1` is 127.0.0.1.
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def url_problem(value: str, max_length: int) -> str | None:
    """Says what keeps `value` from being an absolute http or https URL, or None if nothing does."""
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    if any(_is_space_or_control(char) for char in value):
        return "contains a space or control character"
    try:
        parts = urlsplit(value)
        _ = parts.port  # reading it raises ValueError for a port that is not a number up to 65535
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "is not an absolute http or https URL"
    if not parts.hostname:
        return "has no host name"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address `host` names literally, read as the resolver reads it; None for a name.

    Besides the dotted quad and IPv6, the resolver (inet_aton) takes short and numeric
    IPv4 forms: `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`.
    """
    host = host.strip("[]").translate(_IDNA_DOTS)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host or not all(char.isalnum() or char == "." for char in host) or not host.isascii():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def redact_credentials(url: str) -> str:
    """`url` with the password of its `user:password@` part replaced, for logs and answers.

    A lone `token@` is replaced whole, since it is usually a secret itself. The authority is
    found by hand rather than with urlsplit, which refuses some malformed URLs: those are the
    very ones an error message quotes.
    """
    if "@" not in url:  # nearly every URL: no work on the status path
        return url
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority_end = min((index for index in map(rest.find, "/?#") if index >= 0), default=len(rest))
    userinfo, at, hostport = rest[:authority_end].rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:{REDACTED}" if user and colon else REDACTED
    return f"{scheme}://{shown}@{hostport}{rest[authority_end:]}"


def _is_space_or_control(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) == "Cc"
