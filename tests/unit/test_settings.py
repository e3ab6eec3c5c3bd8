"""The settings: each group reads its own variables, bad ones are all named at once, derived limits fit."""

import os
from collections.abc import Iterator

import pytest

from shared.settings import CodecSettings, InvalidSettings, Settings


def test_each_group_reads_its_variables_by_their_flat_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JPEG_QUALITY", "70")
    monkeypatch.setenv("download_attempts", "2")  # in any case
    settings = Settings.load(env_file=None, webhook_max_attempts=4)
    assert (settings.codec.quality, settings.download.attempts, settings.webhooks.max_attempts) == (70, 2, 4)


def test_a_field_name_is_not_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUALITY", "70")
    assert CodecSettings(_env_file=None).quality == 50


def test_every_bad_setting_is_named_at_once_and_never_its_value() -> None:
    with pytest.raises(InvalidSettings) as refused:
        Settings.load(env_file=None, webhook_secret="oops-secret", download_attempts=-1, storage_backend="s3")
    assert sorted(refused.value.problems) == [
        "DOWNLOAD_ATTEMPTS: Input should be greater than or equal to 1",
        "S3_BUCKET must be set when STORAGE_BACKEND=s3",
        "WEBHOOK_SECRET: must be a Standard Webhooks secret: whsec_ followed by base64",
    ]
    assert "oops-secret" not in str(refused.value)


def test_a_name_that_is_no_setting_is_refused() -> None:
    with pytest.raises(TypeError, match="jpeg_qualty"):
        Settings.load(env_file=None, jpeg_qualty=70)


def test_a_product_must_end_well_within_its_messages_visibility() -> None:
    deadlines = Settings.load(env_file=None).deadlines
    assert (deadlines.product_seconds, deadlines.product_grace_seconds) == (840, 120 + 60 + 600 + 60)
    with pytest.raises(InvalidSettings, match=r"^CODEC_TIMEOUT_SECONDS, STORAGE_RETRY_SECONDS: a product could then"):
        Settings.load(env_file=None, codec_timeout_seconds=900)
    with pytest.raises(InvalidSettings, match=r"run 1980 s"):
        Settings.load(env_file=None, storage_retry_seconds=900)


def test_a_webhook_attempt_holds_its_delivery_past_its_own_deadline() -> None:
    assert Settings.load(env_file=None, webhook_timeout_seconds=10).deadlines.webhook_claim_seconds == 40


@pytest.fixture
def one_core() -> Iterator[None]:
    """This process pinned to one core, as `taskset -c N make worker` pins a worker host."""
    everywhere = os.sched_getaffinity(0)
    if len(everywhere) < 2:
        pytest.skip("one core: a pinned process counts as many as an unpinned one")
    os.sched_setaffinity(0, {min(everywhere)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, everywhere)


@pytest.mark.usefixtures("one_core")
def test_a_worker_pinned_to_one_core_counts_that_core_not_the_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEC_CONCURRENCY", raising=False)
    monkeypatch.delenv("WORKER_CONCURRENCY", raising=False)
    settings = Settings.load(env_file=None)
    assert settings.codec.processes == 1
    assert settings.work.products_at_once == 8
