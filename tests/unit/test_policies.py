"""The service's policies, pinned directly and fast: the webhook retry schedule, a product's result,
the merge of results into the request document, the final status of a request, and the sweep."""

from datetime import UTC, datetime, timedelta

import pytest

from shared.models import RequestStatus, WebhookState, final_status, percentage
from shared.settings import Settings
from shared.store.product_claims import ImageDetails, image_log_of
from shared.store.requests import MAX_ERROR_MESSAGE, merge_update, unchanged_since, unfinished
from worker_service.image_work import ImageOutcome
from worker_service.product_processing import product_result as result_of
from worker_service.sweeper import Cutoffs, processing_request_needs
from worker_service.webhooks import after_attempt

SETTINGS = Settings.load(env_file=None, webhook_retry_base_seconds=5, webhook_max_attempts=8).webhooks


def test_a_delivered_webhook_is_not_tried_again() -> None:
    assert after_attempt(True, 1, SETTINGS) == (WebhookState.DELIVERED, None)


def test_a_failed_attempt_is_retried_after_a_delay_that_doubles() -> None:
    delays = [after_attempt(False, attempts, SETTINGS)[1] for attempts in range(1, 8)]
    assert delays == [5, 10, 20, 40, 80, 160, 320]
    assert {after_attempt(False, attempts, SETTINGS)[0] for attempts in range(1, 8)} == {WebhookState.PENDING}


def test_the_last_failed_attempt_gives_the_delivery_up() -> None:
    assert after_attempt(False, 8, SETTINGS) == (WebhookState.FAILED, None)


def test_a_products_result_lines_up_with_its_images() -> None:
    result = result_of([ImageOutcome(key="r/1-0.jpg"), ImageOutcome(error="HTTP 404"), ImageOutcome(key="r/1-2.png")])
    assert result == {
        "status": "completed",
        "output_keys": ["r/1-0.jpg", None, "r/1-2.png"],
        "errors": [{"index": 1, "message": "HTTP 404"}],
        "images": 3,
        "images_failed": 1,
        "images_reused": 0,
        "bytes_in": 0,
        "bytes_out": 0,
    }


def test_a_product_none_of_whose_images_succeeded_is_failed() -> None:
    result = result_of([ImageOutcome(error="HTTP 404"), ImageOutcome(error="timed out after 30 s")])
    assert result["status"] == "failed"
    assert result["images_failed"] == 2


def test_a_long_error_message_is_cut_to_keep_the_document_small() -> None:
    [error] = result_of([ImageOutcome(error="x" * 1000)])["errors"]
    assert len(error["message"]) == MAX_ERROR_MESSAGE
    assert error["message"].endswith("…")


def test_a_products_result_adds_up_the_bytes_its_images_took_in_and_out() -> None:
    stored = ImageOutcome(key="r/1-0.jpg", details=ImageDetails(bytes_in=1000, bytes_out=400))
    # Downloaded, then refused by the codec: its bytes came in, none went out.
    refused = ImageOutcome(error="not an image", details=ImageDetails(bytes_in=50))
    unreachable = ImageOutcome(error="HTTP 404", details=ImageDetails(attempts=1))
    result = result_of([stored, refused, unreachable])
    assert (result["bytes_in"], result["bytes_out"]) == (1050, 400)


def test_each_images_details_are_kept_by_position_for_the_processing_log() -> None:
    details = ImageDetails(attempts=2, format="JPEG", width=640, height=480, bytes_in=1000, bytes_out=400,
                           download_ms=12.5, compress_ms=30.1, store_ms=1.2)  # fmt: skip
    log = image_log_of(
        [
            outcome.details
            for outcome in (ImageOutcome(key="r/1-0.jpg", details=details), ImageOutcome(error="HTTP 404"))
        ]
    )
    assert log[0] == {
        "attempts": 2,
        "format": "JPEG",
        "width": 640,
        "height": 480,
        "bytes_in": 1000,
        "bytes_out": 400,
        "download_ms": 12.5,
        "compress_ms": 30.1,
        "store_ms": 1.2,
        "finished_at": None,
        "reuse": None,
    }
    assert set(log[1].values()) == {None}


def claim(index: int, images: int, failed: int, attempts: int = 1) -> dict[str, object]:
    outcomes = [ImageOutcome(key=f"r/{index}-{i}.jpg", details=ImageDetails(bytes_in=100, bytes_out=40))
                for i in range(images - failed)]  # fmt: skip
    outcomes += [ImageOutcome(error="HTTP 404")] * failed
    return {"index": index, "attempts": attempts, "result": result_of(outcomes)}


def products(count: int, done: tuple[int, ...] = ()) -> dict[str, object]:
    """A request document as the merge reads it: `count` products, those of `done` already merged."""
    return {
        "products": [{"status": "completed" if i in done else "pending", "output_keys": [], "errors": [], "attempts": 0}
                     for i in range(count)],
        "revision": 7,
    }  # fmt: skip


def test_a_merge_folds_in_only_products_still_pending_and_only_over_what_it_read() -> None:
    document = products(4, done=(3,))
    folded, update = merge_update(document, [claim(0, 2, 0), claim(3, 1, 1)], NOW)
    assert [c["index"] for c in folded] == [0]
    assert update["$inc"]["products_done"] == 1
    assert update["$inc"]["revision"] == 1
    assert unchanged_since(document) == {"revision": 7}
    assert unchanged_since({"products": []}) == {"revision": {"$exists": False}}


def test_a_merge_sets_each_products_result_and_adds_up_the_counters() -> None:
    document = products(4)
    _, update = merge_update(document, [claim(0, 2, 0, attempts=2), claim(3, 1, 1)], NOW)
    written = update["$set"]["products"]
    assert written[0] == {"status": "completed", "output_keys": ["r/0-0.jpg", "r/0-1.jpg"], "errors": [], "attempts": 2}
    assert written[3]["status"] == "failed"
    assert written[3]["errors"] == [{"index": 0, "message": "HTTP 404"}]
    assert written[1]["status"] == written[2]["status"] == "pending"
    assert "updated_at" in update["$set"]
    assert update["$inc"] == {
        "products_done": 2,
        "images_done": 3,
        "images_failed": 1,
        "images_reused": 0,
        "bytes_in": 200,
        "bytes_out": 80,
        "revision": 1,
    }


def test_a_merge_counts_no_bytes_for_a_result_recorded_before_bytes_were_counted() -> None:
    old = claim(0, 1, 0)
    del old["result"]["bytes_in"], old["result"]["bytes_out"]
    _, update = merge_update(products(1), [old], NOW)
    assert (update["$inc"]["bytes_in"], update["$inc"]["bytes_out"]) == (0, 0)


@pytest.mark.parametrize(
    ("failed", "status"),
    [(0, RequestStatus.COMPLETED), (1, RequestStatus.COMPLETED_WITH_ERRORS), (3, RequestStatus.FAILED)],
)
def test_a_requests_final_status_follows_its_failed_images(failed: int, status: RequestStatus) -> None:
    assert final_status(3, failed) == status


def test_percentage_counts_failed_images_as_done_with_one_decimal() -> None:
    assert percentage(2, 3) == 66.7
    assert percentage(0, 0) == 100.0


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SWEEP_SETTINGS = Settings.load(
    env_file=None, stall_seconds=120, merge_interval_seconds=1, sweep_interval_seconds=10
).work


def test_the_sweepers_cutoffs_follow_the_settings() -> None:
    cutoffs = Cutoffs.at(NOW, SWEEP_SETTINGS)
    assert cutoffs.stalled_before == NOW - timedelta(seconds=120)
    assert cutoffs.merge_due_before == NOW - timedelta(seconds=11)
    assert cutoffs.webhook_due_before == NOW - timedelta(seconds=10)


@pytest.mark.parametrize(
    ("done", "idle_seconds", "needs"),
    [(3, 0, "finalise"), (3, 600, "finalise"), (2, 121, "restart"), (2, 119, None), (0, 0, None)],
)
def test_an_unfinished_request_is_finalised_when_all_is_in_or_restarted_when_stalled(
    done: int, idle_seconds: int, needs: str | None
) -> None:
    request = unfinished(
        {"_id": "r", "products_done": done, "products_total": 3, "updated_at": NOW - timedelta(seconds=idle_seconds)}
    )
    assert processing_request_needs(request, Cutoffs.at(NOW, SWEEP_SETTINGS)) == needs
