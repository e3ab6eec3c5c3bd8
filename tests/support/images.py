"""Test images made in memory: photo-like content, metadata, animations, a decompression bomb."""

import io
import random
import struct

from PIL import Image, ImageCms, ImageSequence

from benchmarks.corpus import photo

ORIENTATION = 0x0112
MAKE, MODEL = 0x010F, 0x0110
GPS_IFD = 0x8825


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def frames(data: bytes) -> list[tuple[bytes, int]]:
    """What an animation shows: every frame's pixels and duration."""
    with Image.open(io.BytesIO(data)) as image:
        return [
            (frame.convert("RGBA").tobytes(), frame.info.get("duration")) for frame in ImageSequence.Iterator(image)
        ]


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def jpeg_with_metadata() -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[MAKE] = "TestCam"
    exif[MODEL] = "Model X"
    exif.get_ifd(GPS_IFD)[2] = (48.0, 51.0, 30.0)
    return encode(photo(640, 480, seed=7), "JPEG", quality=95, exif=exif, icc_profile=srgb_profile())


def animated_gif(frames: int = 5) -> bytes:
    images = [photo(120, 90, seed=i).convert("P", palette=Image.Palette.ADAPTIVE) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(
        buffer, "GIF", save_all=True, append_images=images[1:], duration=[80 + i for i in range(frames)], loop=0
    )
    return buffer.getvalue()


def animation_bomb_gif(canvas: tuple[int, int] = (2000, 2000), frames: int = 55) -> bytes:
    """About 100 KB that a decoder draws as `frames` full canvases: 220 megapixels by default.

    Each frame is a 30 x 30 patch of noise, so that Pillow writes every one of them, and the screen
    is then widened to `canvas`: every frame is decoded onto the whole of it.
    """
    rng = random.Random(55)
    patches = [Image.frombytes("L", (30, 30), rng.randbytes(30 * 30)) for _ in range(frames)]
    small = encode(patches[0], "GIF", save_all=True, append_images=patches[1:], duration=100, loop=0)
    return small[:6] + struct.pack("<HH", *canvas) + small[10:]  # the logical screen's width and height


def bomb_png(width: int = 10_000, height: int = 10_000) -> bytes:
    """100 megapixels that compress to a few kilobytes."""
    return encode(Image.new("1", (width, height)), "PNG", optimize=True)
