"""Fixed-seed corpora of product photos.

"mixed" (the original): JPEG from 0.3 to 12 megapixels, some PNG and WebP. "photos": what most
shops upload, JPEG of 0.5 to 2 megapixels only. "burst": per product one small JPEG and one
PNG cut-out, for many small requests at once.
"""

import io
import random
from collections import Counter
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

# (format, megapixels): mostly JPEG photos, a few PNG cut-outs and WebP.
POOL = (
    [("JPEG", mp) for mp in (0.3, 0.5, 0.8, 1.0, 1.2, 1.6, 1.6, 2.0, 2.0, 3.0, 4.0, 6.0, 12.0)]
    + [("PNG", mp) for mp in (0.3, 0.5, 1.0)]
    + [("WEBP", mp) for mp in (0.5, 1.0, 2.0)]
)
# Ordinary product photos: JPEG only, 0.5 to 2 MP, each size once (each its own seed).
PHOTOS_POOL = [("JPEG", mp) for mp in (0.5, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)]
# One product of a burst: a small photo and a cut-out.
BURST_PRODUCT = [("JPEG", 0.8), ("PNG", 0.5)]
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True)
class CorpusImage:
    name: str
    data: bytes
    content_type: str
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def photo(width: int = 800, height: int = 600, seed: int = 1, grain: float = 0.12) -> Image.Image:
    """Soft shapes under sensor-like grain: compresses like a photograph, not like flat art."""
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(10, max(11, width // 4))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(3))
    if not grain:
        return image
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
    return Image.blend(image, noise, grain)


def dimensions(megapixels: float) -> tuple[int, int]:
    """4:3, the shape of most camera photos."""
    height = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    return int(height * 4 / 3), height


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "PNG":
        # A cut-out product shot: a retouched object (no sensor grain) on a transparent background.
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).ellipse(
            (image.width // 8, image.height // 8, image.width * 7 // 8, image.height * 7 // 8), fill=255
        )
        image = image.convert("RGBA")
        image.putalpha(mask)
        image.save(buffer, "PNG")
    else:
        image.save(buffer, fmt, quality=90)
    return buffer.getvalue()


def generate(seed: int = 2026, pool: list[tuple[str, float]] = POOL) -> list[CorpusImage]:
    corpus = []
    for index, (fmt, megapixels) in enumerate(pool):
        width, height = dimensions(megapixels)
        data = encode(photo(width, height, seed + index, grain=0 if fmt == "PNG" else 0.12), fmt)
        corpus.append(CorpusImage(f"{index}.{EXTENSIONS[fmt]}", data, CONTENT_TYPES[fmt], width, height))
    return corpus


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    description: str
    pool: list[tuple[str, float]]
    # Image i has seed + i: corpora with seeds far enough apart share no image.
    seed: int

    def generate(self) -> list[CorpusImage]:
        return generate(self.seed, self.pool)


MIXED = CorpusSpec("mixed", "the original corpus: JPEG photos from 0.3 to 12 MP, PNG cut-outs and WebP", POOL, 2026)
PHOTOS = CorpusSpec(
    "photos", "ordinary product photos: JPEG only, 0.5 to 2 MP, quality 90 with sensor grain", PHOTOS_POOL, 3026
)
CORPORA = {spec.name: spec for spec in (MIXED, PHOTOS)}


def burst_spec(products: int) -> CorpusSpec:
    """Two images per product, each product its own: a JPEG of 0.8 MP and a PNG cut-out of 0.5 MP."""
    return CorpusSpec("burst", "per product a 0.8 MP JPEG and a 0.5 MP PNG cut-out", BURST_PRODUCT * products, 4026)


def formats(corpus: list[CorpusImage]) -> dict[str, int]:
    """Images by format, as the report lists them."""
    return dict(Counter(image.name.rsplit(".", 1)[1] for image in corpus))
