"""One error shape: what the client sees, what the log records, retryable or not, the API's status."""

import logging

from api_service.csv_reader import CsvIssue, CsvValidationError, TooManyImages
from api_service.upload_stream import BodyTooLarge
from shared.errors import InternalError, OutOfTime, ServiceError
from worker_service.codec_pool import CodecBusy, CodecFailed
from worker_service.downloader import BlockedAddress, HttpStatusError
from worker_service.image_codec import TruncatedImage


def test_an_unexpected_error_becomes_an_internal_one_that_tells_the_client_nothing() -> None:
    cause = KeyError("products")
    failure = ServiceError.of(cause)
    assert isinstance(failure, InternalError)
    assert failure.message == "internal error while processing this image"
    assert failure.detail == "KeyError: 'products'"
    assert failure.__cause__ is cause
    assert failure.log_level == logging.ERROR


def test_a_service_error_is_its_own_shape() -> None:
    refused = TruncatedImage()
    assert ServiceError.of(refused) is refused
    assert (refused.message, refused.retryable, refused.log_level) == ("image data is truncated or corrupt", False, 20)


def test_the_client_is_told_less_than_the_log() -> None:
    blocked = BlockedAddress("blocked address: 10.0.0.7 is private")
    assert blocked.message == "address not allowed"
    assert "10.0.0.7" in blocked.detail and "10.0.0.7" not in blocked.message


def test_what_may_go_differently_next_time_is_retryable() -> None:
    assert HttpStatusError(503).retryable and HttpStatusError(429).retryable
    assert not HttpStatusError(404).retryable


def test_a_codec_that_is_busy_past_the_deadline_reads_as_the_products_time_running_out() -> None:
    assert CodecBusy().message == OutOfTime().message == "not finished within the product's time limit"
    failed = CodecFailed("Traceback ...")
    assert failed.message == InternalError.MESSAGE and "Traceback" in failed.detail


def test_errors_that_reach_the_api_carry_their_status_and_answer() -> None:
    invalid = CsvValidationError("the CSV has 1 error", [CsvIssue(3, "S. No.", "not a number")])
    assert invalid.http_status == 400
    assert invalid.extra == {"errors": [{"line": 3, "column": "S. No.", "message": "not a number"}]}
    assert TooManyImages("too many").http_status == 413
    assert BodyTooLarge(10 * 1024 * 1024).http_status == 413
