"""Request and response bodies of the HTTP API, with the examples shown in /docs."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.models import Progress, RequestStatus

EXAMPLE_ID = "3f2c8a9e-5b1d-4c7e-9a2f-6d8e0b1c2a3f"
EXAMPLE_BASE = "http://127.0.0.1:8000/api/v1"


class UploadAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": EXAMPLE_ID,
                    "status": "pending",
                    "status_url": f"{EXAMPLE_BASE}/status/{EXAMPLE_ID}",
                    "download_url": f"{EXAMPLE_BASE}/download/{EXAMPLE_ID}",
                    "products": 2,
                    "images": 3,
                }
            ]
        }
    )

    request_id: str
    status: RequestStatus
    status_url: str
    download_url: str
    products: int = Field(description="products in the file")
    images: int = Field(description="image URLs in the file")


class CsvErrorItem(BaseModel):
    line: int = Field(description="line in the file; the header is line 1")
    column: str | None
    message: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "request not found"}]})

    detail: str


class CsvErrorBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": "the CSV has 2 errors",
                    "errors": [
                        {"line": 3, "column": "S. No.", "message": "serial number must be a positive integer, got 'x'"},
                        {
                            "line": 4,
                            "column": "Input Image Urls",
                            "message": "'ftp://a/b.jpg' is not an absolute http or https URL",
                        },
                    ],
                }
            ]
        }
    )

    detail: str
    errors: list[CsvErrorItem] = []


class RequestListItem(BaseModel):
    request_id: str
    status: RequestStatus
    created_at: datetime
    completed_at: datetime | None
    products: int = Field(description="products in the request")
    images: int = Field(description="image URLs in the request")
    progress: Progress


class RequestList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "requests": [
                        {
                            "request_id": EXAMPLE_ID,
                            "status": "completed",
                            "created_at": "2026-12-06T10:00:00Z",
                            "completed_at": "2026-12-06T10:00:04Z",
                            "products": 2,
                            "images": 3,
                            "progress": {
                                "percentage": 100.0,
                                "products_total": 2,
                                "products_done": 2,
                                "images_total": 3,
                                "images_done": 3,
                                "images_failed": 0,
                                "bytes_in": 481230,
                                "bytes_out": 152811,
                                "images_reused": 0,
                            },
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )

    requests: list[RequestListItem] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class WebhookRegistration(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": EXAMPLE_ID,
                    "webhook_url": "https://shop.example.com/hooks/images",
                }
            ]
        }
    )

    request_id: str
    webhook_url: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes a route can answer."""
    described = {
        400: ("The input is not valid", CsvErrorBody),
        401: ("No valid API key (only when API_KEYS is set)", ErrorBody),
        404: ("No request with this id", ErrorBody),
        409: ("The request is not in a state that allows it (not finished yet, or already final)", ErrorBody),
        413: ("The upload is over a size limit", ErrorBody),
        422: ("A parameter is out of range, or the Idempotency-Key was used for another file", ErrorBody),
        429: ("A rate limit was reached; Retry-After says when to try again", ErrorBody),
        503: ("MongoDB or Redis does not answer", ErrorBody),
    }
    return {code: {"description": described[code][0], "model": described[code][1]} for code in codes}


# The operations on one request, by the links an answer naming it offers (CONTRACT §4): a client
# generator, or a stateful fuzzer such as Schemathesis, follows them from the upload to the end.
REQUEST_OPERATIONS = {
    "status": ("request_status", "its status and progress"),
    "images": ("processing_log", "each image's outcome"),
    "download": ("download_csv", "the output CSV, once it is final"),
    "cancel": ("cancel_request", "cancel it while it is unfinished"),
    "retry": ("retry_request", "process its failed images again once it is final"),
    "delete": ("delete_request", "delete it with its images once it is final"),
}
# Past any request's last product or image, and inside the 64-bit integers MongoDB stores: a larger
# offset reached the database and failed there with a 500 (found by Schemathesis).
MAX_OFFSET = 2**31 - 1


def request_links(request_id_at: str) -> dict[str, dict[str, Any]]:
    """OpenAPI links to every operation on the request whose id is at `request_id_at` (a JSON
    pointer into the answer's body)."""
    request_id = f"$response.body#{request_id_at}"
    links: dict[str, dict[str, Any]] = {
        name: {"operationId": operation_id, "parameters": {"request_id": request_id}, "description": description}
        for name, (operation_id, description) in REQUEST_OPERATIONS.items()
    }
    links["webhook"] = {
        "operationId": "register_webhook",
        "requestBody": {"request_id": request_id},
        "description": "set or replace its webhook",
    }
    return links
