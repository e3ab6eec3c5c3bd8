# The part of simplejpeg (which ships no type information) that worker_service/image_codec.py uses.
from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str

def decode_jpeg(
    data: bytes,
    colorspace: str = "rgb",
    fastdct: bool = False,
    fastupsample: bool = False,
    min_height: int = 0,
    min_width: int = 0,
    min_factor: float = 1.0,
    buffer: Any = None,
    strict: bool = True,
) -> npt.NDArray[np.uint8]: ...
def encode_jpeg(
    image: npt.NDArray[np.uint8],
    quality: int = 85,
    colorspace: str = "rgb",
    colorsubsampling: str = "444",
    fastdct: bool = False,
) -> bytes: ...
