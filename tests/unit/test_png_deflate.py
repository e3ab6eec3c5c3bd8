"""Which PNGs the codec stores as they came, without deflating their pixels again."""

import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from shared.settings import CodecSettings
from tests.support.images import decode, encode, photo
from tests.support.settings import changed
from worker_service import png_deflate
from worker_service.image_codec import TruncatedImage, compress
from worker_service.png_deflate import already_well_deflated

LIMITS = CodecSettings(_env_file=None)
SIGNATURE = b"\x89PNG\r\n\x1a\n"
NONE, UP = 0, 2


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def rgb_png(picture: Image.Image, filters: list[int], level: int, interlace: int = 0, after: bytes = b"") -> bytes:
    """An RGB PNG whose row `y` uses filter `filters[y % len(filters)]`: none or up; its stream goes
    on with `after` past the last row."""
    width, height = picture.size
    pixels = picture.convert("RGB").tobytes()
    row_length = width * 3
    rows, previous = [], bytes(row_length)
    for y in range(height):
        row = pixels[y * row_length : (y + 1) * row_length]
        kind = filters[y % len(filters)]
        filtered = row if kind == NONE else bytes((a - b) & 0xFF for a, b in zip(row, previous, strict=True))
        rows.append(bytes([kind]) + filtered)
        previous = row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, interlace)
    stream = zlib.compress(b"".join(rows) + after, level)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def cut_out(width: int = 320, height: int = 240) -> Image.Image:
    """A product on a transparent background, as shops upload PNGs."""
    picture = photo(width, height, seed=5, grain=0).convert("RGBA")
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (width // 8, height // 8, width * 7 // 8, height * 7 // 8))
    picture.putalpha(mask)
    return picture


def test_pillows_own_png_at_the_default_level_or_above_counts_as_well_deflated() -> None:
    assert already_well_deflated(encode(cut_out(), "PNG"))
    assert already_well_deflated(encode(cut_out(), "PNG", compress_level=9))
    assert already_well_deflated(rgb_png(photo(64, 48, seed=3), [NONE, UP], level=6))


def test_a_fast_deflate_one_filter_a_palette_or_interlacing_is_deflated_again() -> None:
    picture = photo(64, 48, seed=3)
    assert not already_well_deflated(encode(cut_out(), "PNG", compress_level=1))
    assert not already_well_deflated(encode(cut_out(), "PNG", compress_level=5))
    assert not already_well_deflated(rgb_png(picture, [NONE, UP], level=1))
    assert not already_well_deflated(rgb_png(picture, [NONE], level=9))
    assert not already_well_deflated(rgb_png(picture, [UP], level=9))
    assert not already_well_deflated(encode(picture.quantize(64), "PNG"))
    assert not already_well_deflated(rgb_png(picture, [NONE, UP], level=9, interlace=1))


def test_a_broken_or_cut_png_is_left_to_the_decoder_to_refuse() -> None:
    source = encode(cut_out(), "PNG")
    assert not already_well_deflated(source[:40])
    assert not already_well_deflated(source[:20])
    good = rgb_png(photo(64, 48), [NONE, UP], level=6)
    stream = good.index(b"IDAT") + 4
    assert not already_well_deflated(good[:stream] + b"\x00\x00" + good[stream + 2 :])


def test_a_well_deflated_png_is_stored_as_it_came_less_its_metadata_and_as_pillow_would_write_it() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "shot at home")
    source = encode(cut_out(), "PNG", pnginfo=info)

    kept = compress(source, LIMITS)
    deflated_again = compress(source, changed(LIMITS, png_recompress_deflated=True))

    assert kept.source_kept and not deflated_again.source_kept
    assert b"shot at home" not in kept.data
    # Deflating a PNG that Pillow wrote gives back the same stream: the CPU it took bought nothing.
    assert kept.data == deflated_again.data
    assert decode(kept.data).tobytes() == cut_out().tobytes()


def test_a_png_with_one_filter_for_every_row_is_deflated_again_and_comes_out_smaller() -> None:
    picture = photo(320, 240, seed=4, grain=0)
    source = rgb_png(picture, [NONE], level=9)

    result = compress(source, LIMITS)

    assert not result.source_kept
    assert len(result.data) < 0.8 * len(source)
    assert decode(result.data).tobytes() == picture.tobytes()


def test_a_well_deflated_png_whose_stream_breaks_after_its_first_rows_is_refused_not_stored() -> None:
    source = rgb_png(photo(320, 240, seed=6), [NONE, UP], level=6)
    start = source.index(b"IDAT") + 4
    end = start + struct.unpack(">I", source[start - 8 : start - 4])[0]
    middle = (start + end) // 2
    broken = source[:middle] + bytes(b ^ 0x5A for b in source[middle : middle + 64]) + source[middle + 64 :]
    assert already_well_deflated(broken), "the rule must read no further than the first rows"

    with pytest.raises(TruncatedImage):
        compress(broken, LIMITS)


def test_a_stream_that_goes_on_past_the_picture_is_inflated_no_further_than_its_last_row(monkeypatch):
    # One filter for every row, so that the rule reads every row: then 8 MB more that no row holds.
    source = rgb_png(photo(64, 48, seed=7), [NONE], level=9, after=bytes(8 << 20))
    picture_bytes = 48 * (1 + 64 * 3)
    inflated: list[int] = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self) -> None:
            self.inflater = real()

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            piece = self.inflater.decompress(data, max_length)
            inflated.append(len(piece))
            return piece

        @property
        def unconsumed_tail(self) -> bytes:
            return self.inflater.unconsumed_tail

    monkeypatch.setattr(png_deflate.zlib, "decompressobj", Counting)

    assert not already_well_deflated(source)
    assert picture_bytes <= sum(inflated) <= picture_bytes + png_deflate._INFLATE_STEP
