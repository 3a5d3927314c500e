"""Per-message channel headers: bytes by hand, on LeNet-5 split contiguously over 4 devices.

Messages (docs/design.md §3.4; see tests/workload/test_lenet_bytes.py): input 3 messages of 1 channel (tensor of 1
channel); conv1 12 messages of [2,2,1,1] channels by source (tensor of 6 channels); conv2 12 of 4 channels
(16); fc1 12 of 30 (120); fc2 12 of 21 (84); output 3 of [3,2,2] (10). Dense payload total 33,676 B.
index_list = channels * index_bits/8 per message; bitmap = ceil(tensor channels / 8) per message.
"""

from __future__ import annotations

import pytest

import sim
from tests.helpers import scenario_dict

PAYLOAD = 33_676
CHANNELS = 3 * 1 + 3 * (2 + 2 + 1 + 1) + 12 * 4 + 12 * 30 + 12 * 21 + (3 + 2 + 2)  # channels over all messages
BITMAP = 3 * 1 + 12 * 1 + 12 * 2 + 12 * 15 + 12 * 11 + 3 * 2


@pytest.mark.parametrize(
    ("header", "index_bits", "expected"),
    [("none", 32, 0), ("index_list", 32, CHANNELS * 4), ("index_list", 16, CHANNELS * 2), ("bitmap", 32, BITMAP)],
)
def test_header_bytes_by_hand(header: str, index_bits: int, expected: int) -> None:
    result = sim.run(scenario_dict(transfer={"channel_header": header, "index_bits": index_bits}))
    t = result.transfers
    assert CHANNELS == 688 and BITMAP == 357
    assert int(t["header_bytes"].sum()) == result.summary["header_bytes"] == expected
    assert (t["bytes"] == t["dense_bytes"] + t["header_bytes"]).all()  # headers are on the wire
    assert result.summary["bytes_total"] == PAYLOAD + expected
    assert result.summary["bytes_by_format"]["dense"] == PAYLOAD + expected


def test_bitmap_header_of_partial_sums_counts_the_layer_filters() -> None:
    t = sim.run(scenario_dict(transfer={"channel_header": "bitmap", "exchange": "partial_sums"})).transfers
    headers = dict(zip(t["layer"], t["header_bytes"]))
    assert headers["conv2.partial"] == 2 and headers["fc1.partial"] == 15  # 16 and 120 filters


def test_auto_saving_is_the_fraction_of_dense_bytes_auto_saves() -> None:
    result = sim.run(scenario_dict(transfer={"format": "auto"}))
    t = result.transfers
    smallest = t[["dense_bytes", "csr_bytes", "coo_bytes", "bitmap_bytes"]].min(axis=1).sum()
    assert result.summary["bytes_total"] == smallest
    assert result.summary["auto_saving"] == pytest.approx(1 - smallest / PAYLOAD)
    assert 0 < result.summary["auto_saving"] < 1
