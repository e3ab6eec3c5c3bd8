"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.support.schemathesis_hooks).

The schema can say that an upload is a file, not that it is a product CSV, so the fuzzer alone
never gets a request accepted and its stateful phase has no request to follow. Here half of the
uploads carry a real catalogue whose images, on the test image host (SCHEMATHESIS_IMAGE_HOST),
succeed, fail for good or take a few seconds: accepted requests that can be followed, cancelled,
retried and deleted.
"""

import os
import random
import uuid
import zlib

import schemathesis

IMAGE_PATHS = ["img/tiny.jpg", "img/photo.png", "status/404", "delay/2/tiny.jpg"]


def image_url(path: str) -> str:
    # A fresh query each time: no two requests wait on the same image.
    return f"{os.environ['SCHEMATHESIS_IMAGE_HOST']}/{path}?{uuid.uuid4().hex}"


def catalogue(products: list[list[str]]) -> str:
    lines = ["S. No.,Product Name,Input Image Urls"]
    for serial, paths in enumerate(products, start=1):
        urls = ",".join(image_url(path) for path in paths)
        lines.append(f'{serial},Product {serial},"{urls}"')
    return "\n".join(lines) + "\n"


def with_catalogue(case: schemathesis.Case) -> schemathesis.Case:
    """The case with a catalogue of one to three products of one to three images, drawn from its
    own body, so that a seed reproduces its run."""
    draw = random.Random(zlib.crc32(repr(case.body).encode()))
    products = [draw.choices(IMAGE_PATHS, k=draw.randint(1, 3)) for _ in range(draw.randint(1, 3))]
    # Without its webhook_url: a generated one is refused for its host, and the upload with it.
    case.body = {**{k: v for k, v in case.body.items() if k != "webhook_url"}, "file": catalogue(products)}
    return case


def is_positive(case: schemathesis.Case) -> bool:
    """A case meant to be accepted: a negative one must stay as invalid as it was generated."""
    return case.meta is not None and case.meta.generation.mode is schemathesis.GenerationMode.POSITIVE


@schemathesis.hook("map_case").apply_to(operation_id="upload_csv")
def a_catalogue_half_the_time(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    if is_positive(case) and isinstance(case.body, dict) and zlib.crc32(repr(case.body).encode()) % 2:
        return with_catalogue(case)
    return case
