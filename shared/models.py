"""The states a request, a product and a webhook go through, and the views clients see of them."""

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class RequestStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {RequestStatus.COMPLETED, RequestStatus.COMPLETED_WITH_ERRORS, RequestStatus.FAILED, RequestStatus.CANCELLED}
)
UNFINISHED_STATUS_VALUES = sorted({RequestStatus.PENDING.value, RequestStatus.PROCESSING.value})
# The message of an image a cancelled request never did.
CANCELLED_IMAGE = "cancelled"
# As stored in MongoDB, for queries on them.
FINAL_STATUS_VALUES = sorted(status.value for status in FINAL_STATUSES)


def utcnow() -> datetime:
    """Now, timezone-aware: every timestamp the service stores or shows is UTC."""
    return datetime.now(UTC)


class ProductStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class ReuseKind(StrEnum):
    """How an image's output came from an earlier request's (CONTRACT §10)."""

    NOT_MODIFIED = "not_modified"  # the host answered 304 to the remembered validators
    UNCHANGED = "unchanged"  # the body downloaded again has the remembered SHA-256


class WebhookState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Progress(BaseModel):
    percentage: float = Field(description="100 × images done (failed included) / images total, one decimal")
    products_total: int
    products_done: int
    images_total: int
    images_done: int = Field(description="images finished, failed ones included")
    images_failed: int
    bytes_in: int = Field(description="bytes of the images downloaded so far")
    bytes_out: int = Field(description="bytes of the images stored so far")
    images_reused: int = Field(description="images whose output an earlier request's was reused for (re-imports)")


class ImageError(BaseModel):
    url: str
    message: str


class ProductView(BaseModel):
    serial_number: int
    product_name: str
    status: ProductStatus
    input_image_urls: list[str]
    output_image_urls: list[str | None] = Field(
        description="lines up with input_image_urls; null where that image failed or is not done yet"
    )
    errors: list[ImageError]


class WebhookView(BaseModel):
    url: str
    state: WebhookState
    attempts: int
    last_status_code: int | None


class QueuePlace(BaseModel):
    """Where an unfinished request stands while some of its products wait for their turn (CONTRACT §11)."""

    products_waiting: int = Field(description="its products not yet released to the image workers")
    products_ahead: int = Field(
        description="about how many products of any request go to the image workers before its next one"
    )


class StatusView(BaseModel):
    request_id: str
    status: RequestStatus
    progress: Progress
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    download_url: str
    webhook: WebhookView | None
    queue: QueuePlace | None = Field(
        default=None, description="while some of its products wait for their turn; null otherwise"
    )
    products: list[ProductView]


def final_status(images_total: int, images_failed: int) -> RequestStatus:
    """The final state a request reaches once every image is done."""
    if images_failed == 0:
        return RequestStatus.COMPLETED
    if images_failed >= images_total:
        return RequestStatus.FAILED
    return RequestStatus.COMPLETED_WITH_ERRORS


def percentage(images_done: int, images_total: int) -> float:
    return round(100.0 * images_done / images_total, 1) if images_total else 100.0
