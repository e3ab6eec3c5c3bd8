"""Metadata taken out of a source that is stored as it was, without re-encoding its pixels.

The contract keeps the EXIF orientation and the ICC profile of every stored image and drops the rest
(GPS and camera EXIF, XMP, IPTC, comments, text), also when the source is kept because re-encoding
it was not smaller. So the container is walked piece by piece: the pieces that draw the picture,
and the colour ones (ICC profile, JFIF, Adobe transform, gamma...), are copied byte for byte, the
metadata pieces are left out, and an orientation of 2..8 comes back as an EXIF block holding only
that tag. Data after the container's end marker is dropped as well: decoders ignore it, and it is
where MPO pictures and other trailers (each with its own EXIF) live.

Only removing, plus an orientation block that replaces the larger EXIF (or XMP) it was read from,
the result is never larger than the source. BMP has no such metadata (a V5 header's ICC profile
is colour) and comes back as it is; TIFF can't be stripped without rewriting its directories, so
the codec saves it again instead.

Walking GIF blocks, this module also reads a GIF's real canvas for the codec's bomb check: its
frames may reach past the screen the header gives.

A broken structure raises `MalformedContainer`, a ValueError, which the codec reports as a
truncated or corrupt image. Once the image has decoded that is rare; where Pillow is lenient (no
EOI, no GIF trailer, stray bytes between GIF blocks) so is this module.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

EXIF_HEADER = b"Exif\x00\x00"  # starts a JPEG's EXIF block; PNG and WebP hold what follows it


class MalformedContainer(ValueError):
    """A piece of the container runs past its end or has an unknown kind."""


def without_metadata(data: bytes, image_format: str, orientation_exif: bytes) -> bytes:
    """`data` (in Pillow's `image_format`) less its metadata; `orientation_exif` is written back.

    `orientation_exif` is a JPEG EXIF block ("Exif\\0\\0" and a TIFF structure) holding only the
    orientation, or b"" when the picture is upright.
    """
    return _STRIPPERS[image_format](data, orientation_exif)


# JPEG: marker segments. Pixels need the tables, frame and scan headers and the entropy-coded data;
# colours need JFIF (APP0), Adobe's transform flag (APP14) and the ICC profile (APP2).

_SOI, _EOI, _SOS, _APP0, _APP1, _APP2, _APP15, _COM = 0xD8, 0xD9, 0xDA, 0xE0, 0xE1, 0xE2, 0xEF, 0xFE
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0-7 have no length
_KEPT_APP_SEGMENTS = {0xE0: b"JFIF\x00", 0xE2: b"ICC_PROFILE\x00", 0xEE: b"Adobe"}


def _jpeg_without_metadata(data: bytes, orientation_exif: bytes) -> bytes:
    kept = [segment for segment in _jpeg_segments(data) if _is_kept_jpeg_segment(segment)]
    if orientation_exif:
        after_jfif = 1 if kept and kept[0][1] == _APP0 else 0  # JFIF wants to be first, EXIF right after
        kept.insert(after_jfif, _jpeg_segment(_APP1, orientation_exif))
    return bytes([0xFF, _SOI]) + b"".join(kept) + bytes([0xFF, _EOI])


# The most ICC profile one APP2 segment holds: 65,535 less the length field and the chunk's header.
_ICC_CHUNK_BYTES = 65535 - 2 - len(b"ICC_PROFILE\x00") - 2


def jpeg_with_metadata(encoded: bytes, icc_profile: bytes | None, orientation_exif: bytes) -> bytes:
    """A freshly encoded JPEG (SOI, then JFIF) given the EXIF block and ICC profile, where and as
    Pillow's writer puts them: right after JFIF, the profile in numbered chunks."""
    segments = [_jpeg_segment(_APP1, orientation_exif)] if orientation_exif else []
    if icc_profile:
        chunks = [
            icc_profile[start : start + _ICC_CHUNK_BYTES] for start in range(0, len(icc_profile), _ICC_CHUNK_BYTES)
        ]
        segments += [
            _jpeg_segment(_APP2, b"ICC_PROFILE\x00" + bytes([number, len(chunks)]) + chunk)
            for number, chunk in enumerate(chunks, start=1)
        ]
    if not segments:
        return encoded
    after_jfif = 2 + 2 + struct.unpack_from(">H", encoded, 4)[0] if encoded[2:4] == b"\xff\xe0" else 2
    return encoded[:after_jfif] + b"".join(segments) + encoded[after_jfif:]


def _jpeg_segments(data: bytes) -> Iterator[bytes]:
    """Every segment between SOI and EOI, a scan with its entropy-coded data."""
    if not data.startswith(b"\xff\xd8"):
        raise MalformedContainer("JPEG without SOI")
    position = 2
    while position < len(data):  # a missing EOI is tolerated, as by decoders
        if _byte(data, position) != 0xFF:
            raise MalformedContainer(f"JPEG marker expected at {position}")
        while _byte(data, position + 1) == 0xFF:  # fill bytes may pad any marker; they are dropped
            position += 1
        marker = data[position + 1]
        if marker == _EOI:
            return
        if marker in _STANDALONE_MARKERS:
            end = position + 2
        else:
            (length,) = _unpack(">H", data, position + 2)
            end = _within(data, position + 2 + length)
            if marker == _SOS:
                end = _end_of_entropy_coded_data(data, end)
        yield data[position:end]
        position = end


def _end_of_entropy_coded_data(data: bytes, position: int) -> int:
    # In a scan an 0xFF is followed by 0x00 (a stuffed byte), by RST0-7 or by another fill 0xFF;
    # anything else is the next marker.
    while True:
        position = data.find(b"\xff", position)
        if position < 0:
            return len(data)
        follower = _byte(data, position + 1)
        if follower != 0xFF and follower != 0x00 and follower not in _STANDALONE_MARKERS:
            return position
        position += 1


def _is_kept_jpeg_segment(segment: bytes) -> bool:
    marker, body = segment[1], segment[4:]
    if marker == _COM:
        return False
    if _APP0 <= marker <= _APP15:
        signature = _KEPT_APP_SEGMENTS.get(marker)
        return signature is not None and body.startswith(signature)
    return True


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", 2 + len(body)) + body


# PNG: chunks. Every chunk but text, time and EXIF is picture, colour or animation.

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA_CHUNKS = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"}


def _png_without_metadata(data: bytes, orientation_exif: bytes) -> bytes:
    chunks = [chunk for chunk in png_chunks(data) if chunk[4:8] not in _PNG_METADATA_CHUNKS]
    if not chunks or chunks[0][4:8] != b"IHDR":
        raise MalformedContainer("PNG without IHDR first")
    if orientation_exif:  # eXIf must come before IDAT; right after IHDR is always before
        chunks.insert(1, _png_chunk(b"eXIf", orientation_exif.removeprefix(EXIF_HEADER)))
    return _PNG_SIGNATURE + b"".join(chunks)


def png_chunks(data: bytes) -> Iterator[bytes]:
    """Every chunk up to IEND, each with its length and CRC."""
    if not data.startswith(_PNG_SIGNATURE):
        raise MalformedContainer("PNG without its signature")
    position = len(_PNG_SIGNATURE)
    while position < len(data):
        length, kind = _unpack(">I4s", data, position)
        end = _within(data, position + 12 + length)
        yield data[position:end]
        if kind == b"IEND":
            return
        position = end


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# WebP: RIFF chunks. VP8X's flags say which optional chunks follow, and EXIF goes after the picture.

_WEBP_METADATA_CHUNKS = {b"EXIF", b"XMP "}
_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04


def _webp_without_metadata(data: bytes, orientation_exif: bytes) -> bytes:
    chunks = [chunk for chunk in _webp_chunks(data) if chunk[:4] not in _WEBP_METADATA_CHUNKS]
    if not chunks:
        raise MalformedContainer("WebP without a picture")
    if chunks[0].startswith(b"VP8X"):  # only the extended format has flags, and may hold EXIF
        flags = chunks[0][8] & ~(_VP8X_EXIF | _VP8X_XMP)
        if orientation_exif:
            flags |= _VP8X_EXIF
            chunks.append(_riff_chunk(b"EXIF", orientation_exif.removeprefix(EXIF_HEADER)))
        chunks[0] = chunks[0][:8] + bytes([flags]) + chunks[0][9:]
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_chunks(data: bytes) -> Iterator[bytes]:
    """Every chunk inside the RIFF container, each with its padding byte."""
    riff_size, form = _unpack("<I4s", data, 4)
    if not data.startswith(b"RIFF") or form != b"WEBP":
        raise MalformedContainer("WebP without its RIFF header")
    position, riff_end = 12, _within(data, 8 + riff_size)
    while position < riff_end:
        (length,) = _unpack("<I", data, position + 4)
        end = _within(data, position + 8 + length + length % 2)
        yield data[position:end]
        position = end


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) % 2)


# GIF: blocks. Images, graphic control and plain text draw; NETSCAPE and ANIMEXTS loop; ICCRGBG is
# the colour profile. Comments, XMP and every other application extension are metadata.

_GIF_EXTENSION, _GIF_IMAGE, _GIF_TRAILER = 0x21, 0x2C, 0x3B
_GIF_PLAIN_TEXT, _GIF_GRAPHIC_CONTROL, _GIF_APPLICATION = 0x01, 0xF9, 0xFF
_GIF_KEPT_APPLICATIONS = {b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012"}
_GIF_COLOUR_TABLE = 0x80  # flag of the screen and image descriptors


def _gif_without_metadata(data: bytes, orientation_exif: bytes) -> bytes:
    # GIF has no EXIF: an orientation Pillow read from XMP has nowhere to go, and browsers ignore it.
    blocks = [block for block in _gif_blocks(data) if _is_kept_gif_block(block)]
    return data[: _gif_header_end(data)] + b"".join(blocks) + bytes([_GIF_TRAILER])


def gif_canvas_size(data: bytes) -> tuple[int, int]:
    """The screen grown to hold every frame, as Pillow grows it while decoding, from the headers only."""
    width, height = _unpack("<HH", data, 6)
    for block in _gif_blocks(data):
        if block[0] == _GIF_IMAGE:
            left, top, frame_width, frame_height = struct.unpack_from("<HHHH", block, 1)
            width, height = max(width, left + frame_width), max(height, top + frame_height)
    return width, height


def _gif_header_end(data: bytes) -> int:
    """End of the signature, the logical screen descriptor and the global colour table."""
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise MalformedContainer("GIF without its signature")
    return _within(data, 13 + _gif_colour_table_size(_byte(data, 10)))


def _gif_blocks(data: bytes) -> Iterator[bytes]:
    """Every extension and image up to the trailer; like Pillow, a stray byte between them is skipped."""
    position = _gif_header_end(data)
    while position < len(data) and (introducer := data[position]) != _GIF_TRAILER:  # Pillow needs no trailer
        if introducer == _GIF_EXTENSION:
            end = _end_of_gif_sub_blocks(data, position + 2)
        elif introducer == _GIF_IMAGE:
            colour_table = _gif_colour_table_size(_byte(data, position + 9))
            end = _end_of_gif_sub_blocks(data, position + 10 + colour_table + 1)  # + the LZW code size
        else:
            position += 1
            continue
        yield data[position:end]
        position = end


def _end_of_gif_sub_blocks(data: bytes, position: int) -> int:
    while size := _byte(data, position):
        position += 1 + size
    return position + 1


def _gif_colour_table_size(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & _GIF_COLOUR_TABLE else 0


def _is_kept_gif_block(block: bytes) -> bool:
    if block[0] == _GIF_IMAGE:
        return True
    label = block[1]
    if label == _GIF_APPLICATION:
        return block[2] == 11 and block[3:14] in _GIF_KEPT_APPLICATIONS  # its first sub-block names it
    return label in (_GIF_GRAPHIC_CONTROL, _GIF_PLAIN_TEXT)


def _bitmap_as_it_is(data: bytes, orientation_exif: bytes) -> bytes:
    return data


_STRIPPERS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "JPEG": _jpeg_without_metadata,
    "PNG": _png_without_metadata,
    "WEBP": _webp_without_metadata,
    "GIF": _gif_without_metadata,
    "BMP": _bitmap_as_it_is,
}


def _byte(data: bytes, position: int) -> int:
    if position >= len(data):
        raise MalformedContainer("data ends inside a block")
    return data[position]


def _unpack(layout: str, data: bytes, position: int) -> tuple[Any, ...]:
    try:
        return struct.unpack_from(layout, data, position)
    except struct.error as exc:
        raise MalformedContainer("data ends inside a block header") from exc


def _within(data: bytes, end: int) -> int:
    if end > len(data):
        raise MalformedContainer("a block runs past the end of the data")
    return end
