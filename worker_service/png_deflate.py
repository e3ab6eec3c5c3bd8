"""Whether a PNG is already deflated the way the codec would deflate it again.

Re-encoding a PNG is lossless, so all it can win is size, and that comes from two choices: the
filter of each row and the effort of the deflate. Pillow's writer picks a filter for every row by
the usual rule (the one whose bytes sum smallest) and deflates at zlib's default level. A source
whose zlib header says it was deflated at that level or above, and whose rows use more than one
filter (a writer that chose them row by row), comes back from it within a few percent either way,
for about three times the CPU of decoding it (docs/architecture.md, the codec). Such a PNG is stored
as it came.

Every other PNG is re-encoded: a fast deflate, one filter for every row (often none, which is where
re-encoding wins most), a palette or fewer than 8 bits a sample (written unfiltered by every writer,
so the filters say nothing), or interlacing.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from worker_service.image_metadata import MalformedContainer, png_chunks

# FLEVEL, the top two bits of a zlib stream's second byte: 0 fastest, 1 fast, 2 default (6), 3 maximum.
_DEFAULT_LEVEL = 2
_DEFLATE = 8  # CM, the low four bits of its first byte
GREYSCALE, PALETTE = 0, 3  # IHDR colour types
_SAMPLES_A_PIXEL = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
# The rows' filters are read from the inflated stream a piece at a time, so a large picture is never
# held inflated; most writers that choose per row have used two filters within the first rows. Never
# past the picture's last row: a stream may go on inflating long after it (a bomb), which the
# decoder ignores.
_INFLATE_STEP = 1 << 16


@dataclass(frozen=True, slots=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool

    @property
    def row_length(self) -> int:
        """Bytes of one row in the inflated stream: its filter type, then its samples."""
        return 1 + (self.width * _SAMPLES_A_PIXEL.get(self.colour_type, 4) * self.bit_depth + 7) // 8


def already_well_deflated(data: bytes) -> bool:
    """True when the source is deflated at zlib's default level or above with filters chosen per row."""
    try:
        header = png_header(data)
        if header.interlaced or header.bit_depth < 8 or header.colour_type == PALETTE:
            return False
        stream = b"".join(chunk[8:-4] for chunk in png_chunks(data) if chunk[4:8] == b"IDAT")
        if len(stream) < 2 or stream[0] & 0x0F != _DEFLATE or stream[1] >> 6 < _DEFAULT_LEVEL:
            return False
        return _rows_use_several_filters(stream, header.row_length, header.height)
    except (MalformedContainer, zlib.error):
        return False  # decoding it will say what is wrong


def png_header(data: bytes) -> PngHeader:
    """The PNG's IHDR, which is always its first chunk (the codec's checks read it too)."""
    try:
        width, height, bit_depth, colour_type, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    except struct.error as exc:
        raise MalformedContainer("PNG shorter than its header") from exc
    return PngHeader(width, height, bit_depth, colour_type, interlaced=interlace != 0)


def _rows_use_several_filters(stream: bytes, row_length: int, rows: int) -> bool:
    inflater = zlib.decompressobj()
    pending = stream
    picture_end = rows * row_length
    inflated = 0  # bytes of the stream inflated before `piece`
    next_row = 0  # where the next row starts in the inflated stream
    first_filter: int | None = None
    while next_row < picture_end and (piece := inflater.decompress(pending, _INFLATE_STEP)):
        pending = inflater.unconsumed_tail
        filters = piece[next_row - inflated : picture_end - inflated : row_length]
        if filters:
            first_filter = filters[0] if first_filter is None else first_filter
            if filters.count(first_filter) != len(filters):
                return True
        next_row += len(filters) * row_length
        inflated += len(piece)
    return False
