"""The image codec: turns one downloaded body into a smaller image of the same kind.

JPEG and WebP are re-encoded at the configured quality (a colour JPEG by libjpeg-turbo through
simplejpeg, see `_turbo_jpeg`), PNG is re-compressed losslessly unless it is already deflated as
Pillow would deflate it again (`png_deflate`), GIF keeps its frames, and the other formats Pillow
may open (BMP, TIFF) become JPEG. Dimensions never change; the EXIF orientation and the ICC profile
are kept and every other piece of metadata is dropped. When the result is not smaller than the
source, the source is kept: its pixel data as it was, its metadata dropped by the same rules
(`image_metadata`).

The body is untrusted, so: its format comes from its magic bytes and only that Pillow plugin may
open it; its pixel count, frame count and an animation's canvas x frames are checked from the
headers before any pixel is decoded;
truncated data is refused; and every decoder failure becomes an `ImageRejected` whose message is
meant for the end user.

Pillow's pixel limit, its truncated-image switch and the warnings filters are process-global. A
codec process (codec_pool) compresses one image at a time with one set of options, but the same
function serves the tests and the benchmark, which call it in-process with other options. So each
call sets the limit and the switch from its own options (two assignments), and adds the filter that
makes the bomb warning an error only when it is missing, rather than entering and restoring
`warnings.catch_warnings` around every image. The image's own size (a GIF's canvas grown to its
largest frame, read from the frame headers) is checked here as well, so that the limit holds even if
the filter is removed by someone else.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import PIL
import simplejpeg
from PIL import ExifTags, GifImagePlugin, Image, ImageFile, ImageSequence, PngImagePlugin, features

from shared.errors import ServiceError
from shared.settings import CodecSettings
from worker_service.image_metadata import EXIF_HEADER, gif_canvas_size, jpeg_with_metadata, without_metadata
from worker_service.png_deflate import GREYSCALE, already_well_deflated, png_header

# Changed whenever this module changes what it writes for the same input and settings, so that an
# output remembered for a re-import (shared/store/sources.py) is reused only if it would be made again.
CODEC_VERSION = 4
# The codec settings that decide the output or a refusal (not how many processes, nor their time limit).
OUTPUT_SETTINGS = {
    "quality", "jpeg_optimize", "png_optimize", "png_recompress_deflated",
    "max_pixels", "max_frames", "max_animation_pixels",
}  # fmt: skip


def fingerprint(options: CodecSettings) -> str:
    """What decides the bytes stored for a source, and whether it is refused: this code, Pillow and
    its encoders, and every codec setting."""
    made_by = [
        CODEC_VERSION,
        PIL.__version__,
        simplejpeg.__version__,
        *(features.version(codec) for codec in ("jpg", "zlib", "webp")),
    ]
    chosen = options.model_dump(include=OUTPUT_SETTINGS)
    return hashlib.sha256(json.dumps([made_by, chosen], sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class CompressedImage:
    data: bytes
    format: str  # "JPEG" | "PNG" | "WEBP" | "GIF"; a kept BMP or TIFF source keeps its own
    extension: str  # "jpg" | "png" | "webp" | "gif" ("bmp", "tiff" for a kept source)
    content_type: str  # "image/jpeg" ...
    width: int
    height: int
    source_kept: bool  # True when the source bytes were kept because re-encoding was not smaller


class ImageRejected(ServiceError):
    """The body can't be stored as an image; `message` says why, for the end user."""


class NotAnImage(ImageRejected):
    """Not an image, or an image in a format this service does not accept."""


class ImageTooLarge(ImageRejected):
    """More pixels than the limit: refused as a decompression bomb, before decoding."""

    def __init__(self, pixels: int | None, limit: int) -> None:
        size = f"image of {pixels:,} pixels" if pixels is not None else "image"
        super().__init__(f"{size} is over the {limit:,}-pixel limit")
        self.pixels = pixels
        self.limit = limit


class TruncatedImage(ImageRejected):
    def __init__(self) -> None:
        super().__init__("image data is truncated or corrupt")


class TooManyFrames(ImageRejected):
    def __init__(self, frames: int, limit: int) -> None:
        super().__init__(f"animation of {frames:,} frames is over the {limit:,}-frame limit")
        self.frames = frames
        self.limit = limit


class AnimationTooLarge(ImageRejected):
    """Canvas x frames over the limit: every frame is decoded at the canvas size, so it is a bomb."""

    def __init__(self, frames: int, size: tuple[int, int], limit: int) -> None:
        pixels = frames * size[0] * size[1]
        canvas = f"{frames:,} frames of {size[0]}×{size[1]} ({pixels:,} pixels)"
        super().__init__(f"animation of {canvas} is over the {limit:,}-pixel limit")
        self.frames = frames
        self.pixels = pixels
        self.limit = limit


@dataclass(frozen=True, slots=True)
class _Format:
    name: str  # Pillow's name for it
    extension: str
    content_type: str
    animated: bool = False  # may hold several frames, all kept: the frame cap applies


_JPEG = _Format("JPEG", "jpg", "image/jpeg")
_PNG = _Format("PNG", "png", "image/png", animated=True)
_GIF = _Format("GIF", "gif", "image/gif", animated=True)
_WEBP = _Format("WEBP", "webp", "image/webp", animated=True)
_BMP = _Format("BMP", "bmp", "image/bmp")
_TIFF = _Format("TIFF", "tiff", "image/tiff")

_SIGNATURES: tuple[tuple[bytes, _Format], ...] = (
    (b"\xff\xd8\xff", _JPEG),
    (b"\x89PNG\r\n\x1a\n", _PNG),
    (b"GIF87a", _GIF),
    (b"GIF89a", _GIF),
    (b"BM", _BMP),
    (b"II*\x00", _TIFF),
    (b"MM\x00*", _TIFF),
    (b"II+\x00", _TIFF),  # BigTIFF
    (b"MM\x00+", _TIFF),
)

# Images we recognise but don't accept, so that the message can name them.
_UNSUPPORTED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
)
_HEIF_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF"}

_GIF_RESTORE_BACKGROUND = 2  # disposal method
_GREY_MODES = {"1", "L", "LA", "La"}
_SIXTEEN_BIT_GREY_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_JPEG_CONVERTIBLE_MODES = {
    *_GREY_MODES,
    *_SIXTEEN_BIT_GREY_MODES,
    "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
}  # fmt: skip
# What Pillow writes back without changing a pixel; a TIFF kept in any other is written with Deflate.
_LOSSLESS_TIFF_COMPRESSIONS = {"raw", "packbits", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "group3", "group4"}
_DECODER_FAILURES = (OSError, SyntaxError, ValueError, EOFError, struct.error)
_BOMB_WARNING_IS_AN_ERROR = ("error", None, Image.DecompressionBombWarning, None, 0)  # a warnings.filters entry


def compress(data: bytes, options: CodecSettings) -> CompressedImage:
    """Re-encode `data`; raise an `ImageRejected` when it can't be stored as an image."""
    source = _sniff_format(data)
    target = source if source in _ENCODERS else _JPEG
    with _decoding(options), Image.open(io.BytesIO(data), formats=[source.name]) as im:
        # A GIF frame may reach past the screen, which Pillow grows only as it decodes that frame.
        canvas = gif_canvas_size(data) if source is _GIF else im.size
        _check_pixels(canvas, options)
        if source.animated:
            _check_frames(im, canvas, options)
        size = im.size
        if source is _PNG and _pillow_would_lose_png_data(data, im):
            encoded = None
        elif source is _PNG and not _worth_deflating_again(data, im, options):
            im.load()  # decoded all the same, so that a broken stream is refused rather than stored
            encoded = None
        elif source is _JPEG and im.mode == "RGB" and not options.jpeg_optimize:
            encoded = _turbo_jpeg(data, im, options)
        else:
            im.load()  # the first frame only; Pillow turns a TIFF upright here, so metadata is read after it
            encoded = _ENCODERS.get(source, _encode_as_jpeg)(im, options)
        if encoded is None or len(encoded) >= len(data):
            return _result(_kept_source(data, im, source), source, size, source_kept=True)
    return _result(encoded, target, size, source_kept=False)


def _sniff_format(data: bytes) -> _Format:
    if not data:
        raise NotAnImage("not an image (empty body)")
    for signature, image_format in _SIGNATURES:
        if data.startswith(signature):
            return image_format
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _WEBP
    if unsupported := _unsupported_image_format(data):
        raise NotAnImage(f"unsupported image format ({unsupported})")
    raise NotAnImage(f"not an image (starts with '{repr(data[:10])[2:-1]}')")


def _unsupported_image_format(data: bytes) -> str | None:
    for signature, name in _UNSUPPORTED_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return _HEIF_BRANDS[data[8:12]]
    if data.lstrip().startswith(b"<") and b"<svg" in data[:1024]:
        return "SVG"
    return None


@contextmanager
def _decoding(options: CodecSettings) -> Iterator[None]:
    """Pillow's limits set to ours, and decoder failures turned into rejections."""
    Image.MAX_IMAGE_PIXELS = options.max_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    # Above MAX_IMAGE_PIXELS Pillow only warns (it raises at twice that); here the warning is a refusal.
    if _BOMB_WARNING_IS_AN_ERROR not in warnings.filters:
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(_pixels_in_pillow_message(str(exc)), options.max_pixels) from exc
    except _DECODER_FAILURES as exc:
        raise TruncatedImage() from exc


def _pixels_in_pillow_message(message: str) -> int | None:
    # Pillow refuses a bomb inside Image.open, before we see its size; its message has the count.
    match = re.search(r"\((\d+) pixels\)", message)
    return int(match[1]) if match else None


def _check_pixels(size: tuple[int, int], options: CodecSettings) -> None:
    pixels = size[0] * size[1]
    if pixels > options.max_pixels:
        raise ImageTooLarge(pixels, options.max_pixels)


def _check_frames(im: Image.Image, canvas: tuple[int, int], options: CodecSettings) -> None:
    # n_frames decodes nothing: PNG and WebP give the container's count (acTL, libwebp's demuxer), and
    # GIF walks the frame headers, reading past each frame's LZW data without decompressing it.
    # Measured on the tests' 100 KB, 55-frame 2000x2000 GIF: counted in under 1 ms, where compressing
    # it took 14 s and 350 MB (Pillow's GIF writer holds every frame) before MAX_ANIMATION_PIXELS.
    frames = getattr(im, "n_frames", 1)
    if frames > options.max_frames:
        raise TooManyFrames(frames, options.max_frames)
    if frames > 1 and frames * canvas[0] * canvas[1] > options.max_animation_pixels:
        raise AnimationTooLarge(frames, canvas, options.max_animation_pixels)


def _pillow_would_lose_png_data(data: bytes, im: Image.Image) -> bool:
    """Pillow reads 16-bit colour as 8-bit and can't rewrite an APNG's separate default image."""
    header = png_header(data)
    sixteen_bit_colour = header.bit_depth == 16 and header.colour_type != GREYSCALE
    return sixteen_bit_colour or bool(im.info.get("default_image"))


def _worth_deflating_again(data: bytes, im: Image.Image, options: CodecSettings) -> bool:
    if options.png_optimize or options.png_recompress_deflated or getattr(im, "is_animated", False):
        return True
    return not already_well_deflated(data)


def _kept_source(data: bytes, im: Image.Image, source: _Format) -> bytes:
    """The source to store as it was, less the metadata the contract drops."""
    if source is _TIFF:
        return _tiff_without_metadata(im)
    return without_metadata(data, source.name, _orientation_exif(im))


def _tiff_without_metadata(im: Image.Image) -> bytes:
    """The first page written again, losslessly, with its ICC profile and no other metadata.

    Dropping a TIFF's tags in place means rewriting its directories, so Pillow writes a new file from
    the decoded picture, in the source's compression when that is lossless. Pillow has turned the
    picture upright already, so there is no orientation to write; and it is a copy because Pillow's
    writer carries XMP, IPTC and Photoshop tags over from an opened TIFF. Unlike the other formats
    the file may come out larger than the source: dropping GPS and camera data comes first.
    """
    compression = im.info.get("compression")
    return _save(
        im.copy(),
        "TIFF",
        compression=compression if compression in _LOSSLESS_TIFF_COMPRESSIONS else "tiff_adobe_deflate",
        icc_profile=im.info.get("icc_profile"),
    )


def _encode_jpeg(im: Image.Image, options: CodecSettings) -> bytes:
    return _jpeg(im, metadata_from=im, options=options)


def _encode_as_jpeg(im: Image.Image, options: CodecSettings) -> bytes:
    """BMP, TIFF...: JPEG in the same colour family, so that the ICC profile still applies."""
    return _jpeg(_in_jpeg_mode(im), metadata_from=im, options=options)


def _jpeg(pixels: Image.Image, *, metadata_from: Image.Image, options: CodecSettings) -> bytes:
    # optimize is off by default: on 0.3-12 MP photo-like images at q50 it made files 4-17% smaller
    # (mean 9%) for ~1.4x the decode+encode CPU, and the service is CPU-bound (README, `make bench`).
    # Progressive saved only 1.5% more for another 2.2x: never.
    return _save(
        pixels,
        "JPEG",
        quality=options.quality,
        optimize=options.jpeg_optimize,
        icc_profile=metadata_from.info.get("icc_profile"),
        exif=_orientation_exif(metadata_from),
        comment=b"",
    )


def _turbo_jpeg(data: bytes, im: Image.Image, options: CodecSettings) -> bytes:
    """A colour JPEG decoded and encoded by libjpeg-turbo through simplejpeg, not Pillow.

    The same library as Pillow's and the same output as `_jpeg` (4:2:0, the accurate DCT, the
    same tables: 0.5 % smaller files, the same PSNR on the benchmark's photos) for 14-16 % less
    CPU on 1-2 MP photos: Pillow keeps pixels in 4 bytes and copies them row by row into and out
    of libjpeg, where simplejpeg hands libjpeg-turbo one 3-byte buffer (`docs/performance.md`).
    Strict: a truncated or corrupt body is refused, where Pillow fills in grey after a warning.

    Chroma is upsampled by repeating each sample, not by libjpeg's smoothing filter: the encoder
    averages every 2x2 block of chroma back into one sample, which gives a subsampled source's own
    samples back rather than a blurred copy of them (3 dB closer on sharp colour edges, as close
    on photos) for 3 % less of the codec's CPU (`docs/performance.md`).
    """
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", fastupsample=True)
    except ValueError as exc:
        raise TruncatedImage() from exc
    encoded = simplejpeg.encode_jpeg(pixels, quality=options.quality, colorsubsampling="420", fastdct=False)
    return jpeg_with_metadata(encoded, im.info.get("icc_profile"), _orientation_exif(im))


def _in_jpeg_mode(im: Image.Image) -> Image.Image:
    """The picture as L, RGB or CMYK; JPEG has no alpha, so transparency is flattened onto white."""
    if im.mode not in _JPEG_CONVERTIBLE_MODES:
        raise NotAnImage(f"unsupported image format ({im.format} in {im.mode} mode)")
    if im.mode in _SIXTEEN_BIT_GREY_MODES:
        return im.convert("I").point(lambda value: value / 256).convert("L")
    target = "L" if im.mode in _GREY_MODES else "CMYK" if im.mode == "CMYK" else "RGB"
    if not im.has_transparency_data:
        return im if im.mode == target else im.convert(target)
    with_alpha = im.convert(f"{target}A")
    flattened = Image.new(target, im.size, "white")
    flattened.paste(with_alpha, mask=with_alpha)
    return flattened


def _encode_webp(im: Image.Image, options: CodecSettings) -> bytes:
    save_options: dict[str, Any] = {
        "quality": options.quality,
        "icc_profile": im.info.get("icc_profile"),
        # WebP's EXIF chunk holds the TIFF structure without the JPEG "Exif\0\0" header.
        "exif": _orientation_exif(im).removeprefix(EXIF_HEADER),
    }
    if getattr(im, "is_animated", False):
        save_options |= {"save_all": True, "duration": _webp_durations(im), "loop": im.info.get("loop", 0)}
    return _save(im, "WEBP", **save_options)


def _webp_durations(im: Image.Image) -> list[int]:
    # Pillow learns a WebP frame's duration only by decoding it, and saves one duration per frame.
    durations = []
    for frame in range(getattr(im, "n_frames", 1)):  # an animated image has n_frames
        im.seek(frame)
        im.load()
        durations.append(im.info["duration"])
    im.seek(0)
    return durations


def _encode_png(im: Image.Image, options: CodecSettings) -> bytes:
    # Lossless either way. Pillow's optimize (zlib level 9 and a filter search) took 3-5x the
    # CPU of the default level for 0-3% smaller files on product cut-outs (README), so it is a setting.
    save_options: dict[str, Any] = {
        "optimize": options.png_optimize,
        "icc_profile": im.info.get("icc_profile"),
        "exif": _orientation_exif(im),
    }
    if getattr(im, "is_animated", False):
        # Pillow hands over every frame already composited, so each one simply replaces the canvas.
        save_options |= {
            "save_all": True,
            "disposal": PngImagePlugin.Disposal.OP_NONE,
            "blend": PngImagePlugin.Blend.OP_SOURCE,
        }
    return _save(im, "PNG", **save_options)


def _encode_gif(im: Image.Image, options: CodecSettings) -> bytes | None:
    """None when Pillow's writer would change what the animation shows.

    It re-quantises the frames it reads as RGBA, which shifts colours when there is transparency.
    """
    # Durations, loop count and transparency come from each frame's info; comments are metadata.
    save_options: dict[str, Any] = {"optimize": True, "comment": b""}
    if not getattr(im, "is_animated", False):
        return _save(im, "GIF", **save_options)
    disposals, timeline = _gif_frames(im)
    encoded = _save(im, "GIF", save_all=True, disposal=disposals, **save_options)
    with Image.open(io.BytesIO(encoded), formats=["GIF"]) as output:
        _, output_timeline = _gif_frames(output)
    return encoded if output_timeline == timeline else None


def _gif_frames(im: Image.Image) -> tuple[list[int], list[tuple[bytes, int]]]:
    """Each frame's disposal, to write, and what the animation shows (picture digest, duration).

    Pillow writes each frame as a change from the one before, which is right unless the frame
    before is cleared (2) or rolled back (3) first; its writer redraws after a 2 but not after a 3,
    so a 3 is written as a 2. Pillow learns a frame's disposal only by decoding up to it.
    """
    disposals: list[int] = []
    timeline: list[tuple[bytes, int]] = []
    for frame in ImageSequence.Iterator(im):
        assert isinstance(frame, GifImagePlugin.GifImageFile)  # each frame is `im`, opened as a GIF
        disposals.append(min(frame.disposal_method, _GIF_RESTORE_BACKGROUND))
        # Premultiplied, so that every fully transparent pixel is the same whatever colour it hides.
        picture = hashlib.blake2b(frame.convert("RGBA").convert("RGBa").tobytes(), digest_size=16).digest()
        duration = frame.info.get("duration", 0)
        if timeline and timeline[-1][0] == picture:  # Pillow's writer merges repeated frames
            duration += timeline.pop()[1]
        timeline.append((picture, duration))
    im.seek(0)
    return disposals, timeline


_ENCODERS: dict[_Format, Callable[[Image.Image, CodecSettings], bytes | None]] = {
    _JPEG: _encode_jpeg,
    _PNG: _encode_png,
    _GIF: _encode_gif,
    _WEBP: _encode_webp,
}


def _orientation_exif(im: Image.Image) -> bytes:
    """An EXIF block holding only the orientation, or nothing when the picture is upright."""
    orientation = im.getexif().get(ExifTags.Base.Orientation)
    if orientation not in range(2, 9):
        return b""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return exif.tobytes()


def _save(im: Image.Image, image_format: str, **options: Any) -> bytes:
    out = io.BytesIO()
    im.save(out, image_format, **options)
    return out.getvalue()


def _result(data: bytes, image_format: _Format, size: tuple[int, int], *, source_kept: bool) -> CompressedImage:
    return CompressedImage(
        data=data,
        format=image_format.name,
        extension=image_format.extension,
        content_type=image_format.content_type,
        width=size[0],
        height=size[1],
        source_kept=source_kept,
    )
