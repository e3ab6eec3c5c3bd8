"""A fixed-seed corpus of product photos: JPEG from 0.3 to 12 megapixels, some PNG and WebP."""

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

# (format, megapixels): mostly JPEG photos, a few PNG cut-outs and WebP.
POOL = (
    [("JPEG", mp) for mp in (0.3, 0.5, 0.8, 1.0, 1.2, 1.6, 1.6, 2.0, 2.0, 3.0, 4.0, 6.0, 12.0)]
    + [("PNG", mp) for mp in (0.3, 0.5, 1.0)]
    + [("WEBP", mp) for mp in (0.5, 1.0, 2.0)]
)
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


def generate(seed: int = 2026) -> list[CorpusImage]:
    corpus = []
    for index, (fmt, megapixels) in enumerate(POOL):
        width, height = dimensions(megapixels)
        data = encode(photo(width, height, seed + index, grain=0 if fmt == "PNG" else 0.12), fmt)
        corpus.append(CorpusImage(f"{index}.{EXTENSIONS[fmt]}", data, CONTENT_TYPES[fmt], width, height))
    return corpus
