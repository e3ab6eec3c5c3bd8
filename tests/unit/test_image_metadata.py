"""Metadata dropped from a kept source: real files with GPS, camera data, XMP and comments, through `compress`."""

import io
import struct
import zlib

import pytest
from PIL import ExifTags, Image, PngImagePlugin

from shared.settings import CodecSettings
from tests.support.images import decode, encode, frames, photo, srgb_profile
from worker_service.image_codec import CompressedImage, compress
from worker_service.image_metadata import MalformedContainer, without_metadata

LIMITS = CodecSettings(_env_file=None)
ORIENTATION = ExifTags.Base.Orientation
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description City="Lyon"/></rdf:RDF></x:xmpmeta>'
SECRETS = (b"TestCam", b"Model X", b"Lyon", b"shot at home")  # any of these in the output is a leak


def camera_exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[ExifTags.Base.Make] = "TestCam"
    exif[ExifTags.Base.Model] = "Model X"
    exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (48.0, 51.0, 30.0)}
    return exif


def kept(source: bytes) -> CompressedImage:
    """`compress` of a source it keeps, checked to hold no secret and to be no larger."""
    result = compress(source, LIMITS)
    assert result.source_kept, "the test needs a source that re-encoding does not make smaller"
    assert any(secret in source for secret in SECRETS)
    assert not any(secret in result.data for secret in SECRETS)
    assert len(result.data) <= len(source)
    return result


def assert_only_orientation_and_icc(output: Image.Image, orientation: int, icc: bytes) -> None:
    exif = output.getexif()
    assert dict(exif) == {ORIENTATION: orientation}
    assert exif.get_ifd(ExifTags.IFD.GPSInfo) == {}
    assert output.info["icc_profile"] == icc
    assert "xmp" not in output.info
    assert "XML:com.adobe.xmp" not in output.info
    assert "comment" not in output.info


# JPEG


def small_jpeg(picture: Image.Image, **options: object) -> bytes:
    # At quality 10, optimised, the picture is smaller than the codec's quality-50 encoding of it.
    return encode(picture, "JPEG", quality=10, optimize=True, **options)


def test_kept_jpeg_loses_gps_camera_xmp_and_comment_and_keeps_orientation_icc_and_pixels() -> None:
    icc = srgb_profile()
    source = small_jpeg(photo(320, 240), exif=camera_exif(6), icc_profile=icc, xmp=XMP, comment=b"shot at home")

    result = kept(source)

    output = decode(result.data)
    assert_only_orientation_and_icc(output, 6, icc)
    assert output.tobytes() == decode(source).tobytes()
    assert result.data[2:4] == b"\xff\xe0"  # JFIF first, then the orientation
    assert result.data[4 + int.from_bytes(result.data[4:6], "big") :].startswith(b"\xff\xe1")


def test_kept_jpeg_scan_data_is_copied_byte_for_byte() -> None:
    source = small_jpeg(photo(320, 240), exif=camera_exif(1), comment=b"shot at home")
    scan = source[source.index(b"\xff\xda") :]

    result = kept(source)

    assert result.data.endswith(scan)
    assert "exif" not in decode(result.data).info  # upright: no EXIF at all


def test_kept_cmyk_jpeg_keeps_the_adobe_segment_its_colours_depend_on() -> None:
    source = small_jpeg(photo(160, 120).convert("CMYK"), comment=b"shot at home")

    output = decode(kept(source).data)

    assert b"Adobe" in source
    assert output.mode == "CMYK"
    assert output.tobytes() == decode(source).tobytes()


def test_kept_mpo_loses_the_pictures_after_the_first_and_their_exif() -> None:
    source = encode(photo(320, 240), "MPO", quality=10, optimize=True, save_all=True,
                    append_images=[Image.new("RGB", (8, 8))], exif=camera_exif(1))  # fmt: skip

    result = kept(source)

    output = decode(result.data)
    assert output.format == "JPEG"
    assert result.data.endswith(b"\xff\xd9")
    assert output.tobytes() == decode(source).tobytes()


# PNG


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(data: bytes) -> list[bytes]:
    chunks, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        chunks.append(data[offset : offset + 12 + length])
        offset += 12 + length
    return chunks


def test_kept_sixteen_bit_png_loses_text_time_and_exif_but_its_orientation() -> None:
    icc = srgb_profile()
    rows = b"".join(b"\x00" + struct.pack(">HHH", 40000 + x, 1234, 65535) * 32 for x in range(32))
    image_data = png_chunk(b"IDAT", zlib.compress(rows))
    source = b"".join([
        b"\x89PNG\r\n\x1a\n",
        png_chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 16, 2, 0, 0, 0)),
        png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc)),
        png_chunk(b"tEXt", b"Comment\x00shot at home"),
        png_chunk(b"zTXt", b"Author\x00\x00" + zlib.compress(b"someone")),
        png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP),
        png_chunk(b"tIME", struct.pack(">HBBBBB", 2024, 5, 1, 12, 0, 0)),
        png_chunk(b"eXIf", camera_exif(8).tobytes()),
        image_data,
        png_chunk(b"IEND", b""),
    ])  # fmt: skip

    result = kept(source)

    chunks = png_chunks(result.data)
    assert [chunk[4:8] for chunk in chunks] == [b"IHDR", b"eXIf", b"iCCP", b"IDAT", b"IEND"]
    assert image_data in chunks
    output = decode(result.data)
    assert_only_orientation_and_icc(output, 8, icc)
    assert output.text == {}
    assert output.tobytes() == decode(source).tobytes()


def test_kept_apng_with_a_default_image_keeps_its_animation_and_loses_its_text() -> None:
    pictures = [photo(60, 40, seed=seed).convert("RGBA") for seed in range(3)]
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "shot at home")
    source = encode(pictures[0], "PNG", save_all=True, append_images=pictures[1:], default_image=True,
                    duration=[100, 150], loop=0, pnginfo=text)  # fmt: skip

    result = kept(source)

    assert decode(result.data).text == {}
    assert frames(result.data) == frames(source)
    assert [chunk for chunk in png_chunks(result.data) if chunk[4:8] != b"tEXt"] == png_chunks(result.data)


# WebP


def webp_chunks(data: bytes) -> dict[bytes, bytes]:
    chunks, offset = {}, 12
    while offset < len(data):
        kind, length = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        chunks[kind] = data[offset + 8 : offset + 8 + length]
        offset += 8 + length + length % 2
    return chunks


@pytest.mark.parametrize(("orientation", "exif_flag"), [(3, 0x08), (1, 0)])
def test_kept_webp_loses_exif_and_xmp_and_says_so_in_its_flags(orientation: int, exif_flag: int) -> None:
    icc = srgb_profile()
    source = encode(photo(160, 120), "WEBP", quality=5, exif=camera_exif(orientation), xmp=XMP, icc_profile=icc)

    result = kept(source)

    chunks = webp_chunks(result.data)
    assert chunks[b"VP8X"][0] & 0x0C == exif_flag  # EXIF and XMP flags
    assert (b"EXIF" in chunks) == bool(exif_flag)
    assert b"XMP " not in chunks
    assert int.from_bytes(result.data[4:8], "little") == len(result.data) - 8
    output = decode(result.data)
    assert dict(output.getexif()) == ({ORIENTATION: orientation} if exif_flag else {})
    assert output.info["icc_profile"] == icc
    assert "xmp" not in output.info
    assert output.tobytes() == decode(source).tobytes()


# GIF

XMP_APPLICATION = b"!\xff\x0bXMP DataXMP" + XMP + bytes([1, *range(255, -1, -1)]) + b"\x00"  # its "magic trailer"


def test_kept_gif_loses_comments_and_xmp_and_keeps_its_animation() -> None:
    # Photo colours with transparency: Pillow's writer would shift them, so the codec keeps the source.
    first = photo(60, 40, seed=0).quantize(255)
    pictures = [first, *(photo(60, 40, seed).quantize(palette=first) for seed in range(1, 3))]
    written = encode(first, "GIF", save_all=True, append_images=pictures[1:], duration=[80, 120, 160], loop=0,
                     transparency=0, disposal=2, comment=b"shot at home")  # fmt: skip
    screen_end = 13 + 3 * 256
    source = written[:screen_end] + XMP_APPLICATION + written[screen_end:]

    result = kept(source)

    output = Image.open(io.BytesIO(result.data))
    assert "comment" not in output.info
    assert output.info["loop"] == 0
    assert frames(result.data) == frames(source)


# TIFF


def test_kept_tiff_is_written_again_with_only_its_icc_profile() -> None:
    icc = srgb_profile()
    picture = Image.new("1", (64, 64), 1)
    source = encode(picture, "TIFF", compression="group4", exif=camera_exif(1), icc_profile=icc,
                    tiffinfo={700: XMP, 270: "shot at home"})  # fmt: skip

    result = kept(source)

    output = decode(result.data)
    assert (result.format, output.info["compression"], output.info["icc_profile"]) == ("TIFF", "group4", icc)
    assert output.tobytes() == picture.tobytes()


# Malformed containers


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF", id="JPEG segment cut"),
        pytest.param(b"\xff\xd8\x00\x00", id="JPEG without a marker"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00", id="PNG chunk cut"),
        pytest.param(b"RIFF\x20\x00\x00\x00WEBPVP8X", id="RIFF cut"),
        pytest.param(b"GIF89a\x01\x00\x01\x00\x80\x00\x00", id="GIF colour table cut"),
    ],
)
def test_a_broken_container_raises_a_value_error_the_codec_reports(source: bytes) -> None:
    image_format = {b"\xff": "JPEG", b"\x89": "PNG", b"R": "WEBP", b"G": "GIF"}[source[:1]]

    with pytest.raises(MalformedContainer):
        without_metadata(source, image_format, b"")
