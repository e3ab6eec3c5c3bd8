"""Fixtures of the download tests (the downloader's, a re-import batch's checks)."""

from collections.abc import Iterator

import pytest

from shared import address_guard
from tests.support.scripted_server import ScriptedServer


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A local HTTP server that answers each path as the test scripts it."""
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


@pytest.fixture
def resolutions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts the address guard resolves, one per new connection."""
    hosts: list[str] = []
    real_resolve = address_guard.resolve

    def counting_resolve(host: str, port: int) -> list[str]:
        hosts.append(host)
        return real_resolve(host, port)

    monkeypatch.setattr(address_guard, "resolve", counting_resolve)
    return hosts
