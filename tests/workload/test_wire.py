"""Wire encoders and decoders: round trips, buffer lengths against the formulas, and 16-bit limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sim.config.load import parse_scenario
from sim.errors import UserError
from sim.workload import wire
from sim.workload.wire import FORMATS, WireSpec, choose, decode, encode, encoded_sizes
from tests.helpers import scenario_dict

DTYPES = ("float32", "float16", "bfloat16", "int8")
FINITE_MATRICES = hnp.arrays(  # float32 matrices up to 12x12 of any finite values
    np.float32,
    hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
    elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
)


def expected_bytes(fmt: str, rows: int, cols: int, nnz: int, dtype: str, index_bits: int) -> int:
    """The formulas of docs/design.md §3.5, written out again (plus the int8 scale header)."""
    v = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}[dtype]
    i = index_bits // 8
    n = rows * cols
    body = {
        "dense": n * v,
        "csr": (rows + 1) * i + nnz * (v + i),
        "coo": nnz * (v + 2 * i),
        "bitmap": math.ceil(n / 8) + nnz * v,
    }[fmt]
    return body + (4 if dtype == "int8" else 0)


def error_bound(x: np.ndarray, dtype: str) -> np.ndarray:
    """The documented decoding error per element, for values inside float16's range."""
    a = np.abs(x.astype(np.float64))
    if dtype == "float16":
        return np.maximum(a * 2.0**-11, 2.0**-25)  # floor: half the float16 subnormal spacing
    if dtype == "bfloat16":
        return np.maximum(a * 2.0**-8, 2.0**-134)
    if dtype == "int8":
        scale = a.max() / 127 if a.max() > 0 else 1.0
        return np.full(a.shape, scale / 2 * (1 + 1e-4))  # slack for float32 rounding
    return np.zeros(a.shape)


@st.composite
def activations(draw: st.DrawFn) -> np.ndarray:
    """Random matrices up to 40x70 of normal values at a random density and magnitude (|x| < 65504)."""
    rows, cols = draw(st.integers(1, 40)), draw(st.integers(1, 70))
    density = draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0))
    magnitude = 10.0 ** draw(st.floats(-6, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = (rng.standard_normal((rows, cols)) * magnitude).astype(np.float32)
    x[rng.random((rows, cols)) >= density] = 0.0
    return x


@settings(max_examples=60, deadline=None)
@given(x=activations(), dtype=st.sampled_from(DTYPES), index_bits=st.sampled_from([16, 32, 64]))
def test_round_trip_and_lengths(x: np.ndarray, dtype: str, index_bits: int) -> None:
    spec = WireSpec(dtype, index_bits)
    rows, cols = x.shape
    nnz = np.count_nonzero(x)
    for fmt in FORMATS:
        buf = encode(x, fmt, spec)
        assert (
            len(buf)
            == expected_bytes(fmt, rows, cols, nnz, dtype, index_bits)
            == wire.formula_bytes(fmt, rows, cols, nnz, spec)
        )
        out = decode(buf, fmt, x.shape, spec)
        assert out.dtype == np.float32 and out.shape == x.shape
        if dtype == "float32":
            assert out.tobytes() == x.tobytes()
        else:
            error = np.abs(out.astype(np.float64) - x)
            assert np.all(error <= error_bound(x, dtype))
            assert np.all(error <= wire.max_abs_error(x, spec))
            assert np.all(out[x == 0] == 0)


@settings(max_examples=60, deadline=None)
@given(x=activations(), dtype=st.sampled_from(DTYPES), index_bits=st.sampled_from([16, 32, 64]))
def test_sizes_are_buffer_lengths_and_auto_is_smallest(x: np.ndarray, dtype: str, index_bits: int) -> None:
    spec = WireSpec(dtype, index_bits)
    sizes = encoded_sizes(x, spec)
    assert list(sizes) == list(FORMATS)  # everything fits at these shapes, even with 16-bit indices
    assert all(sizes[fmt] == len(encode(x, fmt, spec)) for fmt in FORMATS)
    fmt, nbytes = choose(sizes, "auto")
    assert nbytes == sizes[fmt] == min(sizes.values())
    assert fmt == next(f for f in FORMATS if sizes[f] == nbytes)
    assert all(choose(sizes, f) == (f, sizes[f]) for f in FORMATS)


@settings(max_examples=60, deadline=None)
@given(
    x=FINITE_MATRICES,
    fmt=st.sampled_from(FORMATS),
)
def test_float32_is_exact_for_any_finite_value(x: np.ndarray, fmt: str) -> None:
    out = decode(encode(x, fmt, WireSpec()), fmt, x.shape, WireSpec())
    nonzero = x != 0
    assert out[nonzero].tobytes() == x[nonzero].tobytes()
    assert np.all(out[~nonzero] == 0)  # -0.0 is a zero; sparse formats return +0.0


@settings(max_examples=60, deadline=None)
@given(
    x=FINITE_MATRICES,
    dtype=st.sampled_from(["float16", "bfloat16", "int8"]),
    fmt=st.sampled_from(FORMATS),
)
def test_lossy_types_within_max_abs_error_for_any_finite_value(x: np.ndarray, dtype: str, fmt: str) -> None:
    """Includes values beyond float16's range (clipped) and near float32's limit."""
    peak = np.abs(x).max()
    assume(not (dtype == "int8" and 0 < peak < 127 * 2.0**-126))  # documented: the int8 scale must be normal
    spec = WireSpec(dtype)
    out = decode(encode(x, fmt, spec), fmt, x.shape, spec)
    assert np.isfinite(out).all()
    assert np.all(np.abs(out.astype(np.float64) - x) <= wire.max_abs_error(x, spec))


def test_hand_computed_example() -> None:
    x = np.array([[0, 1.5, 0], [2, 0, 0]], dtype=np.float32)
    spec = WireSpec("float32", 32)
    assert encoded_sizes(x, spec) == {"dense": 24, "csr": 28, "coo": 24, "bitmap": 9}
    assert choose(encoded_sizes(x, spec), "auto") == ("bitmap", 9)

    csr = encode(x, "csr", spec)
    assert np.frombuffer(csr, "<u4", 3).tolist() == [0, 1, 2]  # indptr
    assert np.frombuffer(csr, "<u4", 2, offset=12).tolist() == [1, 0]  # column indices
    assert np.frombuffer(csr, "<f4", 2, offset=20).tolist() == [1.5, 2.0]  # values

    coo = encode(x, "coo", spec)
    assert np.frombuffer(coo, "<u4", 4).tolist() == [0, 1, 1, 0]  # rows, then columns
    assert np.frombuffer(coo, "<f4", 2, offset=16).tolist() == [1.5, 2.0]

    bitmap = encode(x, "bitmap", spec)
    assert bitmap[0] == 0b01010000
    assert np.frombuffer(bitmap, "<f4", 2, offset=1).tolist() == [1.5, 2.0]

    assert np.frombuffer(encode(x, "dense", spec), "<f4").tolist() == [0, 1.5, 0, 2, 0, 0]


def test_index_widths_on_the_wire() -> None:
    x = np.array([[0, 1.5, 0], [2, 0, 0]], dtype=np.float32)
    assert np.frombuffer(encode(x, "csr", WireSpec(index_bits=16)), "<u2", 5).tolist() == [0, 1, 2, 1, 0]
    assert np.frombuffer(encode(x, "coo", WireSpec(index_bits=64)), "<u8", 4).tolist() == [0, 1, 1, 0]


def test_int8_scale_header_and_all_zero_matrix() -> None:
    x = np.array([[0, -254.0, 127.0]], dtype=np.float32)
    buf = encode(x, "dense", WireSpec("int8"))
    assert np.frombuffer(buf, "<f4", 1)[0] == 2.0
    assert np.frombuffer(buf, "i1", offset=4).tolist() == [0, -127, 64]  # 127/2 = 63.5 rounds half to even
    zeros = np.zeros((3, 5), dtype=np.float32)
    for fmt in FORMATS:
        buf = encode(zeros, fmt, WireSpec("int8"))
        assert np.frombuffer(buf, "<f4", 1)[0] == 1.0
        assert np.array_equal(decode(buf, fmt, zeros.shape, WireSpec("int8")), zeros)


def test_bfloat16_rounds_to_nearest_even() -> None:
    x = np.array([[1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-7 + 2**-9), 3.0e38]], dtype=np.float32)
    out = decode(encode(x, "dense", WireSpec("bfloat16")), "dense", x.shape, WireSpec("bfloat16"))
    assert out[0, :3].tolist() == [1.0, 1 + 2**-6, -(1 + 2**-7)]
    assert np.isfinite(out).all()


def test_values_beyond_float16_range_are_clipped() -> None:
    x = np.array([[1e6, -7e4, 65504.0]], dtype=np.float32)
    out = decode(encode(x, "dense", WireSpec("float16")), "dense", x.shape, WireSpec("float16"))
    assert out.tolist() == [[65504.0, -65504.0, 65504.0]]
    assert np.all(np.abs(out - x) <= wire.max_abs_error(x, WireSpec("float16")))


def test_lossy_value_rounded_to_zero_is_still_stored() -> None:
    x = np.array([[1e-9, 0, 1.0]], dtype=np.float32)  # 1e-9 is 0 in float16 and in int8
    for dtype in ("float16", "int8"):
        spec = WireSpec(dtype)
        for fmt in FORMATS:
            buf = encode(x, fmt, spec)
            assert len(buf) == expected_bytes(fmt, 1, 3, 2, dtype, 32)
            assert decode(buf, fmt, x.shape, spec)[0, 2] == 1.0


def test_16_bit_indices_refused_where_they_cannot_address() -> None:
    x = np.zeros((1, 70000), dtype=np.float32)
    x[0, 69999] = 1.0
    spec = WireSpec("float32", 16)
    for fmt in ("csr", "coo"):
        with pytest.raises(UserError, match=r"transfer\.index_bits: 16-bit indices cannot address a 70000-column"):
            encode(x, fmt, spec)
    assert len(encode(x, "dense", spec)) == 280000
    assert np.array_equal(decode(encode(x, "bitmap", spec), "bitmap", x.shape, spec), x)

    sizes = encoded_sizes(x, spec)
    assert sizes == {"dense": 280000, "bitmap": 8750 + 4}
    assert choose(sizes, "auto") == ("bitmap", 8754)
    with pytest.raises(UserError, match="index_bits"):
        choose(sizes, "csr")
    assert set(encoded_sizes(x, WireSpec("float32", 32))) == set(FORMATS)


def test_16_bit_limits_are_per_format() -> None:
    tall = np.zeros((70000, 1), dtype=np.float32)
    tall[69999, 0] = 1.0
    spec = WireSpec("float32", 16)
    # csr stores no row indices (its row pointers count non-zeros), so 16 bits still fit
    assert np.array_equal(decode(encode(tall, "csr", spec), "csr", tall.shape, spec), tall)
    with pytest.raises(UserError, match="70000-row message; use 32"):
        encode(tall, "coo", spec)

    full = np.ones((300, 300), dtype=np.float32)  # 90000 non-zeros overflow 16-bit row pointers
    with pytest.raises(UserError, match="90000 non-zeros"):
        encode(full, "csr", spec)
    assert set(encoded_sizes(full, spec)) == {"dense", "coo", "bitmap"}


def exact_density(density: float, shape: tuple[int, int] = (100, 100)) -> np.ndarray:
    """A matrix with exactly ``density * size`` non-zeros at random places."""
    rng = np.random.default_rng(1)
    x = np.zeros(shape[0] * shape[1], dtype=np.float32)
    where = rng.choice(x.size, round(density * x.size), replace=False)
    x[where] = rng.uniform(0.5, 2.0, where.size)
    return x.reshape(shape)


def test_break_even_densities() -> None:
    """float32 with 4-byte indices: csr beats dense below ~50% density, bitmap up to ~97%."""
    spec = WireSpec("float32", 32)
    sizes = {d: encoded_sizes(exact_density(d), spec) for d in (0.45, 0.55, 0.95, 0.99)}
    assert sizes[0.45]["csr"] < sizes[0.45]["dense"] == 40000
    assert sizes[0.55]["csr"] > sizes[0.55]["dense"]
    assert sizes[0.95]["bitmap"] < sizes[0.95]["dense"]
    assert sizes[0.99]["bitmap"] > sizes[0.99]["dense"]
    assert choose(sizes[0.95], "auto")[0] == "bitmap"
    assert choose(sizes[0.99], "auto")[0] == "dense"


def test_auto_ties_follow_format_order() -> None:
    assert choose({"dense": 5, "csr": 5, "coo": 5, "bitmap": 6}, "auto") == ("dense", 5)
    assert choose({"dense": 9, "csr": 5, "coo": 5, "bitmap": 5}, "auto") == ("csr", 5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dtype": "float64"}, "transfer.dtype"),
        ({"dtype": "int4"}, "transfer.dtype"),
        ({"index_bits": 8}, "transfer.index_bits"),
        ({"index_bits": 48}, "transfer.index_bits"),
    ],
)
def test_bad_spec(kwargs: dict, field: str) -> None:
    """The scenario refuses a dtype or index width the wire module has no layout for (checked once, there)."""
    with pytest.raises(UserError, match=field):
        parse_scenario(scenario_dict(transfer=kwargs))


def test_unknown_format() -> None:
    with pytest.raises(UserError, match=r"transfer\.format: must be one of 'dense', 'csr', 'coo', 'bitmap' or 'auto'"):
        parse_scenario(scenario_dict(transfer={"format": "zip"}))


def test_wire_vocabulary_is_the_schemas() -> None:
    assert set(wire.VALUE_BYTES) == {"float32", "float16", "bfloat16", "int8"}
    assert wire.FORMATS == ("dense", "csr", "coo", "bitmap")


def test_decode_rejects_a_buffer_of_the_wrong_length() -> None:
    x = np.ones((2, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="not a csr encoding"):
        decode(encode(x, "csr", WireSpec())[:-1], "csr", x.shape, WireSpec())


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    density=st.floats(0.0, 1.0),
    dtype=st.sampled_from(["float32", "float16", "bfloat16", "int8"]),
    index_bits=st.sampled_from([16, 32, 64]),
    seed=st.integers(0, 2**16),
)
def test_closed_form_sizes_equal_the_encoded_lengths(rows, cols, density, dtype, index_bits, seed) -> None:
    # sizing reads lengths from (rows, cols, nnz) alone; the real encoders must agree, format by format.
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((rows, cols)).astype(np.float32) * (rng.random((rows, cols)) < density)
    spec = wire.WireSpec(dtype, index_bits)
    nnz = int(np.count_nonzero(m))
    assert wire.sizes_from_counts(rows, cols, nnz, spec) == wire.encoded_sizes(m, spec)


def test_closed_form_sizes_leave_out_formats_the_index_width_cannot_address() -> None:
    # 16-bit indices address at most 65536 columns: csr and coo drop out, as for the real encoder.
    m = np.zeros((1, 70_000), dtype=np.float32)
    m[0, -1] = 1.0
    spec = wire.WireSpec("float32", 16)
    assert (
        wire.sizes_from_counts(1, 70_000, 1, spec)
        == wire.encoded_sizes(m, spec)
        == {
            "dense": 280_000,
            "bitmap": 8_750 + 4,
        }
    )
