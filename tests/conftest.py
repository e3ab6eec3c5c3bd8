"""Fixtures shared by the whole suite: the running service and local HTTP servers."""

import pytest

from local_stack.seaweedfs import SeaweedFS, running_seaweedfs
from tests.support.image_server import ImageServer
from tests.support.stack import Stack, start_stack
from tests.support.webhook_receiver import WebhookReceiver

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="session")
def image_server() -> ImageServer:
    with ImageServer() as server:
        yield server


@pytest.fixture(scope="session")
def webhook_receiver() -> WebhookReceiver:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The whole service as `make run` starts it, on embedded servers, with short recovery timings."""
    with start_stack(tmp_path_factory.mktemp("stack"), {"WEBHOOK_SECRET": WEBHOOK_SECRET}) as running:
        yield running


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> SeaweedFS:
    """A real S3-compatible server with a private bucket, one for the whole session: tests keep
    apart by the prefixes of their keys."""
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
