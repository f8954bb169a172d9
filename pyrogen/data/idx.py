"""Reader and writer for the IDX format of MNIST and Fashion-MNIST (gzipped or plain).

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number
of dimensions ``n``; then ``n`` big-endian uint32 sizes; then the data in C order, big-endian.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder(">"): code for code, dtype in _DTYPES.items()}


def _open(path: Path, mode: str):
    return gzip.open(path, mode) if path.suffix == ".gz" else open(path, mode)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into a numpy array of its stored shape and type.

    :raises ValueError: when the header is not a valid IDX header or the data are truncated.
    """
    path = Path(path)
    try:
        with _open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise ValueError(
            f"{path}: cannot read the file ({err}); is it a valid (gzipped) IDX file?"
        ) from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ValueError(
            f"{path}: corrupt IDX header (expected bytes 00 00 <type> <ndim>, got {raw[:4].hex()});"
            " is this an MNIST-format idx file?"
        )
    dtype, ndim = _DTYPES[raw[2]], raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(
            f"{path}: corrupt IDX header (file ends inside the {ndim} dimension sizes)."
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_size != expected:
        raise ValueError(
            f"{path}: the header announces shape {shape} ({expected} bytes of data) but the file "
            f"holds {len(raw) - header_size} bytes; the file is truncated or corrupt."
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header_size)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzipped when ``path`` ends in ``.gz``."""
    path, array = Path(path), np.asarray(array)
    big_endian = array.dtype.newbyteorder(">")
    if big_endian not in _CODES:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use one of {list(_DTYPES.values())}."
        )
    header = bytes([0, 0, _CODES[big_endian], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with _open(path, "wb") as f:
        f.write(header + array.astype(big_endian).tobytes())
