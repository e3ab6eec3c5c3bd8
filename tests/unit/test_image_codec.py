"""The image codec, judged by its output files decoded back with Pillow."""

import io
import random
import struct
import tracemalloc
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import ExifTags, Image, ImageChops, ImageDraw, ImageFile, ImageFilter, ImageSequence, ImageStat, PngImagePlugin

from shared.settings import CodecSettings, Settings
from tests.support.images import animation_bomb_gif, decode, encode, frames, srgb_profile
from tests.support.settings import changed
from worker_service.image_codec import (
    OUTPUT_SETTINGS,
    AnimationTooLarge,
    CompressedImage,
    ImageTooLarge,
    NotAnImage,
    TooManyFrames,
    TruncatedImage,
    compress,
    fingerprint,
)

LIMITS = CodecSettings(_env_file=None)
ORIENTATION = ExifTags.Base.Orientation

# The IJG example tables (JPEG standard, Annex K) in natural order: libjpeg uses them as they are at q50.
IJG_LUMINANCE = [
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip
IJG_CHROMINANCE = [
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    *[99] * 32,
]  # fmt: skip


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """Soft shapes plus grain, compressing like a photograph; the same picture on every run."""
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(5, max(6, width // 4))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(2))
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
    return Image.blend(image, grain, 0.1)


def flat_art(width: int, height: int, seed: int) -> Image.Image:
    """A few shapes in eight colours of one palette, index 0 left for transparency."""
    rng = random.Random(seed)
    image = Image.new("P", (width, height), 0)
    image.putpalette(
        [0, 0, 0, 230, 30, 30, 30, 160, 60, 40, 60, 200, 250, 200, 0, 250, 250, 250, 120, 0, 120, 0, 150, 150]
    )
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        draw.rectangle((x, y, x + rng.randrange(width // 2), y + rng.randrange(height // 2)), fill=rng.randrange(1, 8))
    return image


def premultiplied_frames(data: bytes) -> list[tuple[bytes, int]]:
    """Frames as they look: a fully transparent pixel is the same whatever colour it hides."""
    with Image.open(io.BytesIO(data)) as image:
        return [(frame.convert("RGBA").convert("RGBa").tobytes(), frame.info.get("duration"))
                for frame in ImageSequence.Iterator(image)]  # fmt: skip


def png_chunks(data: bytes) -> list[bytes]:
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        chunks.append(kind)
        offset += 12 + length
    return chunks


def handmade_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def handmade_gif(screen: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> bytes:
    """Frames given as (x, y, width, height), each with one pixel of data: only headers matter here."""
    one_pixel = b"\x02\x02\x44\x01\x00"
    body = b"".join(b"," + struct.pack("<HHHHB", *box, 0) + one_pixel for box in boxes)
    return b"GIF89a" + struct.pack("<HHBBB", *screen, 0, 0, 0) + body + b";"


def assert_recompressed(result: CompressedImage, source: bytes, fmt: str, size: tuple[int, int]) -> Image.Image:
    assert not result.source_kept
    assert len(result.data) < len(source)
    assert result.format == fmt
    assert (result.width, result.height) == size
    output = decode(result.data)
    assert output.format == fmt
    assert output.size == size
    return output


# JPEG


def test_jpeg_is_reencoded_at_quality_50() -> None:
    picture = photo(320, 240)
    source = encode(picture, "JPEG", quality=95)

    result = compress(source, LIMITS)

    output = assert_recompressed(result, source, "JPEG", (320, 240))
    assert (result.extension, result.content_type) == ("jpg", "image/jpeg")
    pillow_at_50 = decode(encode(decode(source), "JPEG", quality=50))
    assert output.quantization == pillow_at_50.quantization
    assert output.quantization[0] == IJG_LUMINANCE
    assert output.quantization[1] == IJG_CHROMINANCE


def test_jpeg_quality_comes_from_the_limits() -> None:
    source = encode(photo(320, 240), "JPEG", quality=95)

    output = decode(compress(source, changed(LIMITS, quality=80)).data)

    assert output.quantization != {0: IJG_LUMINANCE, 1: IJG_CHROMINANCE}
    assert output.quantization == decode(encode(decode(source), "JPEG", quality=80)).quantization


def test_jpeg_keeps_orientation_and_icc_profile_and_drops_the_rest() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[ExifTags.Base.Make] = "TestCam"
    exif[ExifTags.Base.Model] = "Model X"
    exif[ExifTags.Base.DateTime] = "2024:05:01 12:00:00"
    exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (48.0, 51.0, 30.0)}
    exif[ExifTags.IFD.Exif] = {ExifTags.Base.LensModel: "50mm"}
    icc = srgb_profile()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    source = encode(photo(320, 240), "JPEG", quality=95, exif=exif, icc_profile=icc, xmp=xmp, comment=b"shot at home")
    assert decode(source).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the source really has GPS

    output = assert_recompressed(compress(source, LIMITS), source, "JPEG", (320, 240))

    output_exif = output.getexif()
    assert dict(output_exif) == {ORIENTATION: 6}
    assert output_exif.get_ifd(ExifTags.IFD.GPSInfo) == {}
    assert output_exif.get_ifd(ExifTags.IFD.Exif) == {}
    assert output.info["icc_profile"] == icc
    assert "xmp" not in output.info
    assert "comment" not in output.info


def segments_before_the_scan(data: bytes) -> list[bytes]:
    """Each marker segment's marker and signature (an APP's first bytes), up to the first scan."""
    found, position = [], 2
    while data[position + 1] != 0xDA:
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        found.append(data[position + 1 : position + 2] + data[position + 4 : position + 4 + min(length - 2, 5)])
        position += 2 + length
    return found


def test_a_colour_jpeg_comes_out_as_pillows_writer_makes_it() -> None:
    # libjpeg-turbo through simplejpeg, not Pillow: the same tables, segments and pixels within rounding.
    exif = Image.Exif()
    exif[ORIENTATION] = 3
    icc = srgb_profile()
    source = encode(photo(640, 480), "JPEG", quality=95, exif=exif, icc_profile=icc)
    orientation_only = Image.Exif()
    orientation_only[ORIENTATION] = 3
    by_pillow = encode(decode(source), "JPEG", quality=50, exif=orientation_only.tobytes(), icc_profile=icc)

    ours = compress(source, LIMITS).data

    assert segments_before_the_scan(ours) == segments_before_the_scan(by_pillow)
    assert decode(ours).quantization == decode(by_pillow).quantization
    assert abs(len(ours) - len(by_pillow)) < 0.02 * len(by_pillow)
    difference = ImageChops.difference(decode(ours).convert("RGB"), decode(by_pillow).convert("RGB"))
    assert max(ImageStat.Stat(difference).mean) < 1.0


def colour_blocks(width: int, height: int, side: int = 8) -> Image.Image:
    """Squares of saturated colours side by side, as on a product's colour chart."""
    rng = random.Random(3)
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(0, height, side):
        for x in range(0, width, side):
            draw.rectangle((x, y, x + side - 1, y + side - 1), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


def chroma_error(data: bytes, source: bytes) -> float:
    """The root mean square of the differences in Cb and Cr from the source, as decoded."""
    difference = ImageChops.difference(decode(data).convert("YCbCr"), decode(source).convert("YCbCr"))
    _, cb, cr = ImageStat.Stat(difference).rms
    return (cb + cr) / 2


def test_a_colour_jpeg_keeps_its_sources_chroma_samples_rather_than_a_blur_of_them() -> None:
    # A 4:2:0 source's chroma, repeated on decoding and averaged back on encoding, comes out as it
    # was; libjpeg's smoothing filter (Pillow's) blurs it at every sharp colour edge.
    source = encode(colour_blocks(320, 240), "JPEG", quality=95)
    by_pillow = encode(decode(source), "JPEG", quality=50)

    ours = compress(source, LIMITS).data

    assert chroma_error(ours, source) < 0.85 * chroma_error(by_pillow, source)


def test_an_icc_profile_longer_than_a_segment_is_kept_whole() -> None:
    icc = srgb_profile() + bytes(range(256)) * 600  # 150 KB: three APP2 segments
    source = encode(photo(320, 240), "JPEG", quality=95, icc_profile=icc)

    output = decode(compress(source, LIMITS).data)

    assert output.info["icc_profile"] == icc


def test_a_corrupt_colour_jpeg_is_refused_rather_than_filled_in() -> None:
    source = bytearray(encode(photo(320, 240), "JPEG", quality=95))
    scan = source.index(b"\xff\xda")
    source[scan + 200 : scan + 260] = b"\xff\xd0" * 30  # restart markers where there is no restart interval

    with pytest.raises(TruncatedImage):
        compress(bytes(source), LIMITS)


def test_upright_jpeg_gets_no_exif_at_all() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 1
    exif[ExifTags.Base.Make] = "TestCam"
    source = encode(photo(320, 240), "JPEG", quality=95, exif=exif)

    output = decode(compress(source, LIMITS).data)

    assert "exif" not in output.info


def test_cmyk_jpeg_stays_cmyk() -> None:
    source = encode(photo(320, 240).convert("CMYK"), "JPEG", quality=95)

    output = assert_recompressed(compress(source, LIMITS), source, "JPEG", (320, 240))

    assert output.mode == "CMYK"


def test_mpo_becomes_a_plain_jpeg_of_its_first_picture() -> None:
    first, second = photo(320, 240, seed=1), photo(320, 240, seed=2)
    source = encode(first, "MPO", quality=95, save_all=True, append_images=[second])

    output = assert_recompressed(compress(source, LIMITS), source, "JPEG", (320, 240))

    assert not getattr(output, "is_animated", False)


def test_format_comes_from_the_bytes_not_the_claimed_type() -> None:
    # Served as "photo.png" with Content-Type image/png: only the bytes count, and they are a JPEG.
    source = encode(photo(320, 240), "JPEG", quality=95)

    result = compress(source, LIMITS)

    assert (result.format, result.extension, result.content_type) == ("JPEG", "jpg", "image/jpeg")


# WebP


def test_webp_stays_webp_at_the_configured_quality() -> None:
    source = encode(photo(320, 240), "WEBP", quality=95)

    result = compress(source, LIMITS)

    assert_recompressed(result, source, "WEBP", (320, 240))
    assert (result.extension, result.content_type) == ("webp", "image/webp")
    # libwebp is deterministic: the same pixels at the same quality give the same bytes.
    assert result.data == encode(decode(source), "WEBP", quality=50)


def test_webp_keeps_orientation_and_icc_profile_and_drops_the_rest() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 3
    exif[ExifTags.Base.Model] = "Model X"
    icc = srgb_profile()
    source = encode(photo(320, 240), "WEBP", quality=95, exif=exif, icc_profile=icc)

    output = assert_recompressed(compress(source, LIMITS), source, "WEBP", (320, 240))

    assert dict(output.getexif()) == {ORIENTATION: 3}
    assert output.info["icc_profile"] == icc


def test_animated_webp_keeps_its_frames_durations_and_loop() -> None:
    pictures = [photo(160, 120, seed=seed) for seed in range(3)]
    source = encode(pictures[0], "WEBP", quality=95, save_all=True, append_images=pictures[1:],
                    duration=[100, 200, 300], loop=2)  # fmt: skip

    result = compress(source, LIMITS)

    output = assert_recompressed(result, source, "WEBP", (160, 120))
    assert output.n_frames == 3
    assert [duration for _, duration in frames(result.data)] == [100, 200, 300]
    assert output.info["loop"] == 2


# PNG


def _palette_with_transparency() -> Image.Image:
    image = photo(160, 120).quantize(16)
    image.info["transparency"] = bytes(range(0, 256, 16))
    return image


@pytest.mark.parametrize(
    "picture",
    [
        pytest.param(photo(160, 120), id="RGB"),
        pytest.param(photo(160, 120).convert("RGBA"), id="RGBA"),
        pytest.param(_palette_with_transparency(), id="P+tRNS"),
        pytest.param(photo(160, 120).convert("LA"), id="LA"),
        pytest.param(photo(160, 120).convert("1"), id="1-bit"),
        pytest.param(photo(160, 120).convert("L").point(lambda v: v * 257, "I").convert("I;16"), id="16-bit grey"),
    ],
)
def test_png_is_recompressed_losslessly(picture: Image.Image) -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "made by a test")
    source = encode(picture, "PNG", compress_level=0, pnginfo=text)

    result = compress(source, LIMITS)

    output = assert_recompressed(result, source, "PNG", (160, 120))
    assert (result.extension, result.content_type) == ("png", "image/png")
    original = decode(source)
    assert output.mode == original.mode
    assert output.tobytes() == original.tobytes()
    assert output.getpalette() == original.getpalette()
    assert output.info.get("transparency") == original.info.get("transparency")
    assert output.convert("RGBA").tobytes() == original.convert("RGBA").tobytes()
    assert output.text == {}


def test_png_keeps_orientation_and_icc_profile_and_nothing_else() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    exif[ExifTags.Base.Make] = "TestCam"
    icc = srgb_profile()
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "someone")
    source = encode(photo(160, 120), "PNG", compress_level=0, exif=exif, icc_profile=icc, pnginfo=text, dpi=(300, 300))

    result = compress(source, LIMITS)

    output = assert_recompressed(result, source, "PNG", (160, 120))
    assert dict(output.getexif()) == {ORIENTATION: 8}
    assert output.info["icc_profile"] == icc
    assert png_chunks(result.data) == [b"IHDR", b"iCCP", b"eXIf", b"IDAT", b"IEND"]


def test_sixteen_bit_colour_png_is_kept_because_pillow_would_cut_it_to_8_bits() -> None:
    rows = b"".join(b"\x00" + struct.pack(">HHH", 40000 + x, 1234, 65535) * 64 for x in range(64))
    source = handmade_png(64, 64, 16, 2, rows)

    result = compress(source, LIMITS)

    assert result.source_kept
    assert result.data == source
    assert (result.format, result.width, result.height) == ("PNG", 64, 64)


def test_animated_png_keeps_its_frames_and_durations() -> None:
    pictures = [photo(120, 90, seed=seed).convert("RGBA") for seed in range(3)]
    source = encode(pictures[0], "PNG", compress_level=0, save_all=True, append_images=pictures[1:],
                    duration=[100, 150, 200], loop=0)  # fmt: skip

    result = compress(source, LIMITS)

    assert_recompressed(result, source, "PNG", (120, 90))
    assert frames(result.data) == frames(source)


# GIF


def test_gif_keeps_its_frames_durations_loop_and_transparency() -> None:
    pictures = [flat_art(120, 90, seed) for seed in range(4)]
    source = encode(pictures[0], "GIF", save_all=True, append_images=pictures[1:], duration=[80, 120, 160, 200],
                    loop=0, transparency=0, disposal=2, comment=b"x" * 4000, optimize=False)  # fmt: skip

    result = compress(source, LIMITS)

    output = assert_recompressed(result, source, "GIF", (120, 90))
    assert (result.extension, result.content_type) == ("gif", "image/gif")
    assert output.n_frames == 4
    assert output.info["loop"] == 0
    assert "comment" not in output.info
    assert premultiplied_frames(result.data) == premultiplied_frames(source)


def test_gif_animation_is_never_altered() -> None:
    # Pillow's writer re-quantises frames that have transparency: photo colours can come out shifted.
    first = photo(120, 90, seed=0).quantize(255)
    pictures = [first, *(photo(120, 90, seed).quantize(palette=first) for seed in range(1, 4))]
    source = encode(first, "GIF", save_all=True, append_images=pictures[1:], duration=[80, 120, 160, 200],
                    loop=0, transparency=0, disposal=2)  # fmt: skip

    result = compress(source, LIMITS)

    assert result.format == "GIF"
    assert premultiplied_frames(result.data) == premultiplied_frames(source)


# Other formats


@pytest.mark.parametrize(
    ("picture", "fmt", "mode"),
    [
        pytest.param(photo(200, 150), "BMP", "RGB", id="BMP RGB"),
        pytest.param(photo(200, 150).quantize(64), "BMP", "RGB", id="BMP palette"),
        pytest.param(photo(200, 150), "TIFF", "RGB", id="TIFF RGB"),
        pytest.param(photo(200, 150).convert("CMYK"), "TIFF", "CMYK", id="TIFF CMYK"),
        pytest.param(
            photo(200, 150).convert("L").point(lambda v: v * 257, "I").convert("I;16"),
            "TIFF",
            "L",
            id="TIFF 16-bit grey",
        ),
    ],
)
def test_other_formats_become_jpeg(picture: Image.Image, fmt: str, mode: str) -> None:
    source = encode(picture, fmt)

    result = compress(source, LIMITS)

    output = assert_recompressed(result, source, "JPEG", (200, 150))
    assert (result.extension, result.content_type) == ("jpg", "image/jpeg")
    assert output.mode == mode
    assert output.quantization[0] == IJG_LUMINANCE


def test_sixteen_bit_grey_is_scaled_not_clipped_on_the_way_to_jpeg() -> None:
    grey = Image.new("I;16", (64, 64), 128 * 257)
    output = decode(compress(encode(grey, "TIFF"), LIMITS).data)

    assert abs(output.getpixel((32, 32)) - 128) <= 2


def test_transparency_becomes_white_in_jpeg() -> None:
    picture = photo(200, 150).convert("RGBA")
    picture.paste((255, 0, 0, 0), (0, 0, 100, 150))  # left half: fully transparent red
    icc = srgb_profile()
    source = encode(picture, "TIFF", icc_profile=icc)

    output = assert_recompressed(compress(source, LIMITS), source, "JPEG", (200, 150))

    assert all(channel >= 250 for channel in output.getpixel((40, 75)))
    assert output.info["icc_profile"] == icc


def test_tiff_orientation_is_applied_by_pillow_so_the_jpeg_is_upright() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    source = encode(photo(200, 150), "TIFF", exif=exif)  # stored 200 x 150, shown 150 x 200

    output = assert_recompressed(compress(source, LIMITS), source, "JPEG", (150, 200))

    assert ORIENTATION not in output.getexif()


# Never larger


@pytest.mark.parametrize(
    ("source", "fmt", "extension", "content_type"),
    [
        pytest.param(
            encode(photo(320, 240), "JPEG", quality=10, optimize=True),
            "JPEG",
            "jpg",
            "image/jpeg",
            id="optimised q10 JPEG",
        ),
        pytest.param(encode(Image.new("RGB", (1, 1)), "PNG", optimize=True), "PNG", "png", "image/png", id="1x1 PNG"),
        pytest.param(encode(Image.new("RGB", (2, 2)), "BMP"), "BMP", "bmp", "image/bmp", id="tiny BMP"),
    ],
)
def test_source_is_kept_when_the_result_is_not_smaller(source: bytes, fmt: str, extension: str,
                                                      content_type: str) -> None:  # fmt: skip
    result = compress(source, LIMITS)

    assert result.source_kept
    assert result.data == source
    assert (result.format, result.extension, result.content_type) == (fmt, extension, content_type)
    assert (result.width, result.height) == decode(source).size


# Rejections


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>Not found</body></html>", "not an image (starts with '<html><bod')"),
        (b"", "not an image (empty body)"),
        (b"\x00\x01\x02garbage", r"not an image (starts with '\x00\x01\x02garbage')"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "unsupported image format (AVIF)"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "unsupported image format (SVG)"),
    ],
)
def test_what_is_not_an_accepted_image_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(NotAnImage) as refused:
        compress(body, LIMITS)

    assert refused.value.message == message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_truncated_image_is_refused(fmt: str) -> None:
    source = encode(photo(320, 240).convert("P") if fmt == "GIF" else photo(320, 240), fmt)

    with pytest.raises(TruncatedImage) as refused:
        compress(source[: len(source) // 2], LIMITS)

    assert refused.value.message == "image data is truncated or corrupt"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.fixture(scope="module")
def hundred_megapixel_png() -> bytes:
    """10,000 x 10,000 black 1-bit pixels: 12 KB of file."""
    return handmade_png(10_000, 10_000, 1, 0, bytes(1 + 10_000 // 8) * 10_000)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.usefixtures("no_decoding")
def test_decompression_bomb_is_refused_from_its_header(hundred_megapixel_png: bytes) -> None:
    with pytest.raises(ImageTooLarge) as refused:
        compress(hundred_megapixel_png, LIMITS)

    assert refused.value.message == "image of 100,000,000 pixels is over the 50,000,000-pixel limit"


@pytest.mark.parametrize(
    ("source", "limits", "message"),
    [
        pytest.param(handmade_png(8_000, 7_000, 1, 0, b""), LIMITS,
                     "image of 56,000,000 pixels is over the 50,000,000-pixel limit", id="just over 50 MP"),
        pytest.param(encode(Image.new("RGB", (50, 40)), "PNG"), changed(LIMITS, max_pixels=1_999),
                     "image of 2,000 pixels is over the 1,999-pixel limit", id="configured limit"),
        pytest.param(handmade_gif((10_000, 10_000), [(0, 0, 1, 1)]), LIMITS,
                     "image of 100,000,000 pixels is over the 50,000,000-pixel limit", id="GIF screen"),
        pytest.param(handmade_gif((1, 1), [(0, 0, 1, 1), (0, 0, 10_000, 10_000)]), LIMITS,
                     "image of 100,000,000 pixels is over the 50,000,000-pixel limit", id="GIF frame outgrowing"),
    ],
)  # fmt: skip
def test_too_many_pixels_are_refused(source: bytes, limits: CodecSettings, message: str) -> None:
    with pytest.raises(ImageTooLarge) as refused:
        compress(source, limits)

    assert refused.value.message == message


def test_pixel_limit_holds_even_when_pillow_bomb_warnings_are_ignored() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageTooLarge) as refused:
            compress(handmade_png(8_000, 7_000, 1, 0, b""), LIMITS)

    assert refused.value.message == "image of 56,000,000 pixels is over the 50,000,000-pixel limit"


def test_threads_compressing_at_once_keep_every_limit(hundred_megapixel_png: bytes) -> None:
    photo_jpeg = encode(photo(160, 120), "JPEG", quality=95)
    bodies = [hundred_megapixel_png, handmade_png(8_000, 7_000, 1, 0, b""), photo_jpeg] * 8

    def outcome(body: bytes) -> str:
        try:
            return compress(body, LIMITS).format
        except ImageTooLarge:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(outcome, bodies))

    assert outcomes == ["refused", "refused", "JPEG"] * 8


def test_too_many_frames_are_refused() -> None:
    pictures = [Image.new("L", (8, 8), 40 * shade) for shade in range(6)]
    source = encode(pictures[0], "GIF", save_all=True, append_images=pictures[1:])

    with pytest.raises(TooManyFrames) as refused:
        compress(source, changed(LIMITS, max_frames=5))

    assert refused.value.message == "animation of 6 frames is over the 5-frame limit"
    assert compress(source, changed(LIMITS, max_frames=6)).format == "GIF"


@pytest.mark.usefixtures("no_decoding")
def test_animation_bomb_is_refused_before_any_frame_is_decoded() -> None:
    bomb = animation_bomb_gif()  # 55 frames of 2000 x 2000 in about 100 KB

    tracemalloc.start()  # sees Python's allocations only: Pillow's pixel buffers are kept out by no_decoding
    try:
        with pytest.raises(AnimationTooLarge) as refused:
            compress(bomb, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(bomb) < 200_000
    assert refused.value.message == (
        "animation of 55 frames of 2000×2000 (220,000,000 pixels) is over the 200,000,000-pixel limit"
    )
    assert peak < 50_000_000


def test_animation_at_the_limit_passes_and_one_pixel_over_is_refused() -> None:
    source = animation_bomb_gif(canvas=(200, 100), frames=5)

    assert compress(source, changed(LIMITS, max_animation_pixels=100_000)).format == "GIF"
    with pytest.raises(AnimationTooLarge) as refused:
        compress(source, changed(LIMITS, max_animation_pixels=99_999))
    assert refused.value.message == "animation of 5 frames of 200×100 (100,000 pixels) is over the 99,999-pixel limit"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animation_limit_holds_for_apng_and_webp(fmt: str) -> None:
    pictures = [Image.new("RGB", (50, 40), (60 * shade, 0, 0)) for shade in range(3)]
    source = encode(pictures[0], fmt, save_all=True, append_images=pictures[1:], duration=100)

    with pytest.raises(AnimationTooLarge) as refused:
        compress(source, changed(LIMITS, max_animation_pixels=5_999))

    assert refused.value.message == "animation of 3 frames of 50×40 (6,000 pixels) is over the 5,999-pixel limit"


@pytest.mark.usefixtures("no_decoding")
def test_animation_limit_counts_gif_frames_that_reach_past_the_screen() -> None:
    # A 1 x 1 screen, and one-pixel frames at (1999, 1999): Pillow grows the canvas as it decodes them.
    source = handmade_gif((1, 1), [(0, 0, 1, 1), *[(1999, 1999, 1, 1)] * 54])

    with pytest.raises(AnimationTooLarge) as refused:
        compress(source, LIMITS)

    assert refused.value.message == (
        "animation of 55 frames of 2000×2000 (220,000,000 pixels) is over the 200,000,000-pixel limit"
    )


def test_limits_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.load(
        jpeg_quality=70, max_image_pixels=1_000_000, max_animation_frames=20, max_animation_pixels=9_000
    )

    assert settings.codec == changed(
        LIMITS, quality=70, max_pixels=1_000_000, max_frames=20, max_animation_pixels=9_000
    )
    monkeypatch.setenv("MAX_ANIMATION_PIXELS", "1234")
    assert CodecSettings(_env_file=None).max_animation_pixels == 1234
    monkeypatch.delenv("MAX_ANIMATION_PIXELS")
    assert Settings.load(env_file=None).codec.max_animation_pixels == LIMITS.max_animation_pixels == 200_000_000


def test_every_setting_that_decides_the_output_changes_the_fingerprint_and_no_other_does():
    """The re-import memory reuses an output only under the same fingerprint (shared/store/sources.py)."""
    others = {"concurrency": 7, "timeout_seconds": 3.5}  # how many processes, and how long each may take
    output_settings = set(CodecSettings.model_fields) - set(others)
    assert output_settings == OUTPUT_SETTINGS
    for name in output_settings:
        default = getattr(LIMITS, name)
        other = (not default) if isinstance(default, bool) else default - 1
        assert fingerprint(changed(LIMITS, **{name: other})) != fingerprint(LIMITS), name
    assert fingerprint(changed(LIMITS, **others)) == fingerprint(LIMITS)


def test_optimize_settings_are_lossless_and_never_larger():
    from benchmarks.corpus import photo

    source = photo(400, 300, seed=9, grain=0)
    png = encode(source, "PNG", compress_level=1)
    jpeg = encode(photo(400, 300, seed=9), "JPEG", quality=95)
    plain = compress(png, changed(LIMITS, png_optimize=False))
    optimized = compress(png, changed(LIMITS, png_optimize=True))
    for result in (plain, optimized):
        assert Image.open(io.BytesIO(result.data)).tobytes() == source.tobytes()
    assert len(optimized.data) <= len(plain.data) < len(png)
    assert len(compress(jpeg, changed(LIMITS, jpeg_optimize=True)).data) < len(compress(jpeg, LIMITS).data)
