"""Encoders and decoders of message payloads on the wire (docs/design.md §3.5).

A payload is a 2-D float32 matrix (``batch*channels`` rows by ``H*W`` columns, or ``batch`` by ``features``).
Each concrete format has a real encoder and decoder, and the byte count of a message is always the length
of its encoded buffer, which equals :func:`formula_bytes`. With ``v`` value bytes, ``i = index_bits/8``
index bytes, ``N = rows*cols``, ``R = rows`` and ``nnz`` the non-zeros of the float32 input:

- dense:  ``N*v``                     values, row-major
- csr:    ``(R+1)*i + nnz*(v+i)``     row pointers, column indices, values
- coo:    ``nnz*(v+2*i)``             row indices, column indices, values (row-major order)
- bitmap: ``ceil(N/8) + nnz*v``       row-major presence bitmap (``np.packbits``), then values

Departure (docs/design.md §7): with ``dtype="int8"`` every format starts with a 4-byte little-endian float32
scale header (``scale = max|x|/127`` rounded down to float32, or 1.0 when that is 0), so its length is
the formula plus 4 bytes.

All multi-byte fields are little-endian. Every non-zero of the float32 input is stored, even if a lossy
value type rounds it to 0, so lengths never depend on rounding. ``-0.0`` counts as a zero: dense keeps it
bit for bit, the sparse formats decode it as ``+0.0``. Inputs are assumed finite.

Decoding error (see :func:`max_abs_error`): float32 is exact; float16 and bfloat16 round to nearest even,
relative error <= 2**-11 and <= 2**-8 in their normal ranges (values beyond a type's finite range are
clipped to it); int8 stores ``round(x/scale)`` (half to even) clipped to [-127, 127], absolute error
<= scale/2 plus float32 rounding below 2**-16 * scale (while the scale is a normal float32, that is
max|x| >= 127 * 2**-126).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from sim.config.vocab import CONCRETE_FORMATS, DTYPES, INDEX_BITS
from sim.errors import UserError
from sim.workload.types import FLOAT32_BYTES

FORMATS: tuple[str, ...] = CONCRETE_FORMATS  # concrete formats, in tie-break order (sim.config.vocab)
VALUE_BYTES: dict[str, int] = dict(zip(DTYPES, (FLOAT32_BYTES, 2, 2, 1), strict=True))  # float32 float16 bfloat16 int8

SCALE_BYTES = 4  # the int8 scale header, bytes
_INDEX_DTYPE: dict[int, np.dtype[Any]] = {16: np.dtype("<u2"), 32: np.dtype("<u4"), 64: np.dtype("<u8")}
_FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504
_BFLOAT16_MAX = float(np.array([0x7F7F0000], dtype="<u4").view("<f4")[0])  # ~3.39e38


@dataclass(frozen=True)
class WireSpec:
    """How values and indices are written: ``dtype`` is the value type (one of
    :data:`sim.config.vocab.DTYPES`), ``index_bits`` the index width (16, 32 or 64); the scenario schema
    refuses any other."""

    dtype: str = "float32"
    index_bits: int = 32


def formula_bytes(fmt: str, rows: int, cols: int, nnz: int, spec: WireSpec) -> int:
    """Bytes of a ``rows`` x ``cols`` message with ``nnz`` non-zeros in format ``fmt`` (int8 adds 4).

    Pure arithmetic: it does not check that ``spec.index_bits`` can address the message (see :func:`encode`).
    """
    fixed, per_nonzero = _layout(fmt, rows, cols, spec)
    return fixed + nnz * per_nonzero


def encode(matrix: np.ndarray, fmt: str, spec: WireSpec) -> bytes:
    """The wire buffer of a 2-D float32 ``matrix`` in format ``fmt``; its length is :func:`formula_bytes`.

    Raises :class:`UserError` for an unknown format, or when ``spec.index_bits`` is too narrow for the
    column/row indices or row pointers this format needs (dense and bitmap need none).
    """
    m = _as_matrix(matrix)
    rows, cols = m.shape
    _layout(fmt, rows, cols, spec)  # rejects unknown formats
    problem = _index_problem(fmt, rows, cols, int(np.count_nonzero(m)), spec.index_bits)
    if problem:
        raise UserError(problem)
    scale = _scale(m, spec)
    index = _INDEX_DTYPE[spec.index_bits]
    if fmt == "dense":
        parts = [_pack_values(m.ravel(), spec.dtype, scale)]
    elif fmt == "csr":
        s = sparse.csr_array(m)
        parts = [s.indptr.astype(index), s.indices.astype(index), _pack_values(s.data, spec.dtype, scale)]
    elif fmt == "coo":
        c = sparse.coo_array(m)
        parts = [c.coords[0].astype(index), c.coords[1].astype(index), _pack_values(c.data, spec.dtype, scale)]
    else:  # bitmap
        present = m != 0
        parts = [np.packbits(present), _pack_values(m[present], spec.dtype, scale)]
    header = [np.array([scale], dtype="<f4")] if spec.dtype == "int8" else []
    return b"".join(p.tobytes() for p in header + parts)


def decode(buf: bytes, fmt: str, shape: tuple[int, int], spec: WireSpec) -> np.ndarray:
    """The float32 matrix of ``shape`` held in ``buf``, an :func:`encode` buffer of format ``fmt``.

    The number of non-zeros is recovered from the buffer length; raises ``ValueError`` when that length
    fits no message of this shape.
    """
    rows, cols = shape
    fixed, per_nonzero = _layout(fmt, rows, cols, spec)
    nnz, extra = divmod(len(buf) - fixed, per_nonzero) if per_nonzero else (0, len(buf) - fixed)
    if extra or nnz < 0:
        raise ValueError(f"a {len(buf)}-byte buffer is not a {fmt} encoding of a {rows}x{cols} matrix")
    read = _Reader(buf)
    scale = float(read(np.dtype("<f4"), 1)[0]) if spec.dtype == "int8" else 1.0
    index = _INDEX_DTYPE[spec.index_bits]
    if fmt == "dense":
        return _read_values(read, rows * cols, spec.dtype, scale).reshape(rows, cols)
    if fmt == "csr":
        indptr, indices = read(index, rows + 1), read(index, nnz)
        values = _read_values(read, nnz, spec.dtype, scale)
        return sparse.csr_array((values, indices, indptr), shape=shape).toarray()
    if fmt == "coo":
        row, col = read(index, nnz), read(index, nnz)
        values = _read_values(read, nnz, spec.dtype, scale)
        return sparse.coo_array((values, (row, col)), shape=shape).toarray()
    present = np.unpackbits(read(np.dtype("u1"), math.ceil(rows * cols / 8)), count=rows * cols).astype(bool)
    out = np.zeros(rows * cols, dtype=np.float32)
    out[present] = _read_values(read, nnz, spec.dtype, scale)
    return out.reshape(rows, cols)


def encoded_sizes(matrix: np.ndarray, spec: WireSpec) -> dict[str, int]:
    """Encoded bytes of ``matrix`` per format, in :data:`FORMATS` order.

    Formats whose indices ``spec.index_bits`` cannot address are left out of the dict (dense and bitmap
    are always present); :func:`choose` skips them for ``auto`` and refuses them when named.
    """
    m = _as_matrix(matrix)
    rows, cols = m.shape
    nnz = int(np.count_nonzero(m))
    return {
        fmt: len(encode(m, fmt, spec))
        for fmt in FORMATS
        if _index_problem(fmt, rows, cols, nnz, spec.index_bits) is None
    }


def sizes_from_counts(rows: int, cols: int, nnz: int, spec: WireSpec) -> dict[str, int]:
    """:func:`encoded_sizes` of any ``rows`` x ``cols`` matrix with ``nnz`` non-zeros, by :func:`formula_bytes`
    (every format's length follows from these three numbers), without encoding.

    >>> sizes_from_counts(2, 3, 1, WireSpec())
    {'dense': 24, 'csr': 20, 'coo': 12, 'bitmap': 5}
    """
    return {
        fmt: formula_bytes(fmt, rows, cols, nnz, spec)
        for fmt in FORMATS
        if _index_problem(fmt, rows, cols, nnz, spec.index_bits) is None
    }


def choose(sizes: Mapping[str, int], fmt: str) -> tuple[str, int]:
    """``(format, bytes)`` for a message with :func:`encoded_sizes` ``sizes`` under the configured ``fmt``.

    ``fmt`` is one of :data:`FORMATS` or ``"auto"``: the smallest usable format, ties broken by
    :data:`FORMATS` order.
    """
    if fmt == "auto":
        best = min((f for f in FORMATS if f in sizes), key=sizes.__getitem__)
        return best, sizes[best]
    if fmt not in sizes:
        raise UserError(
            f"transfer.index_bits: too narrow for {fmt} indices of this message; use a wider index_bits "
            "or transfer.format dense, bitmap or auto"
        )
    return fmt, sizes[fmt]


def max_abs_error(matrix: np.ndarray, spec: WireSpec) -> np.ndarray:
    """Per-element bound on ``|decode(encode(matrix)) - matrix|`` for ``spec.dtype``, as float64.

    float32: 0. float16: ``max(|x| * 2**-11, 2**-25)`` (the floor covers float16 subnormals) plus the
    excess clipped above 65504. bfloat16: ``max(|x| * 2**-8, 2**-134)``. int8: ``scale * (1/2 + 2**-16)``.
    """
    m = _as_matrix(matrix)
    x = np.abs(m.astype(np.float64))
    if spec.dtype == "float16":
        return np.maximum(x * 2.0**-11, 2.0**-25) + np.maximum(x - _FLOAT16_MAX, 0.0)
    if spec.dtype == "bfloat16":
        return np.maximum(x * 2.0**-8, 2.0**-134)
    if spec.dtype == "int8":
        return np.full(x.shape, _scale(m, spec) * (0.5 + 2.0**-16))
    return np.zeros(x.shape)


def _as_matrix(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"a wire payload is a 2-D matrix, got shape {m.shape}")
    return m


def _layout(fmt: str, rows: int, cols: int, spec: WireSpec) -> tuple[int, int]:
    """``(fixed bytes, bytes per non-zero)`` of format ``fmt``, the int8 scale header included."""
    v, i = VALUE_BYTES[spec.dtype], spec.index_bits // 8
    header = SCALE_BYTES if spec.dtype == "int8" else 0
    layouts = {
        "dense": (rows * cols * v, 0),
        "csr": ((rows + 1) * i, v + i),
        "coo": (0, v + 2 * i),
        "bitmap": (math.ceil(rows * cols / 8), v),
    }
    fixed, per_nonzero = layouts[fmt]
    return header + fixed, per_nonzero


def _index_problem(fmt: str, rows: int, cols: int, nnz: int, bits: int) -> str | None:
    """Why ``bits``-bit indices cannot hold format ``fmt`` of this message, or None if they can."""
    column = (cols - 1, f"address a {cols}-column message")
    row = (rows - 1, f"address a {rows}-row message")
    pointer = (nnz, f"count {nnz} non-zeros in csr row pointers")
    needs = {"csr": [column, pointer], "coo": [row, column]}
    for largest, what in needs.get(fmt, []):
        if largest >= 2**bits:
            wider = next(b for b in INDEX_BITS if largest < 2**b)
            return f"transfer.index_bits: {bits}-bit indices cannot {what}; use {wider}"
    return None


def _scale(m: np.ndarray, spec: WireSpec) -> float:
    """The int8 quantisation step (``max|x|/127``, or 1.0 when that is 0); 1.0 for other dtypes."""
    if spec.dtype != "int8":
        return 1.0
    exact = float(np.abs(m).max(initial=0.0)) / 127
    step = np.float32(exact)
    if float(step) > exact:  # round down, so that 127 * scale cannot overflow float32
        step = np.nextafter(step, np.float32(0))
    return float(step) if step > 0 else 1.0


def _pack_values(x: np.ndarray, dtype: str, scale: float) -> np.ndarray:
    """float32 values ``x`` as the little-endian array written for ``dtype``."""
    if dtype == "float32":
        return x.astype("<f4")
    if dtype == "float16":
        return np.clip(x, -_FLOAT16_MAX, _FLOAT16_MAX).astype("<f2")
    if dtype == "bfloat16":  # top 16 bits of the float32, rounded to nearest even
        bits = np.clip(x, -_BFLOAT16_MAX, _BFLOAT16_MAX).astype("<f4").view("<u4")
        return ((bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) >> 16).astype("<u2")
    return np.clip(np.rint(x / np.float32(scale)), -127, 127).astype("i1")  # int8


def _read_values(read: _Reader, count: int, dtype: str, scale: float) -> np.ndarray:
    """Read ``count`` values of ``dtype`` and return them as float32."""
    if dtype == "float32":
        return read(np.dtype("<f4"), count).astype(np.float32)
    if dtype == "float16":
        return read(np.dtype("<f2"), count).astype(np.float32)
    if dtype == "bfloat16":
        return (read(np.dtype("<u2"), count).astype("<u4") << 16).view("<f4").astype(np.float32)
    return read(np.dtype("i1"), count).astype(np.float32) * np.float32(scale)  # int8


class _Reader:
    """Reads consecutive little-endian arrays from a buffer."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.offset = buf, 0

    def __call__(self, dtype: np.dtype[Any], count: int) -> np.ndarray:
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.offset)
        self.offset += count * dtype.itemsize
        return out
