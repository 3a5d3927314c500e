"""Energy by hand: closed forms for a 2-device mesh, tails that merge, a relay on a line, the shared medium
(and a multicast on it), protocol headers on the wire, and the presets' cited numbers."""

from __future__ import annotations

import pandas as pd
import pytest

from sim.analysis.energy import ENERGY_COLUMNS, energy_table, radio_energy, union_s
from sim.config.presets import POWER_PRESETS
from sim.config.schema import PowerSpec
from sim.engine.devices import DeviceRate
from sim.engine.network import TCP, Link, Network
from sim.engine.simulate import Hop, simulate
from sim.workload.types import Workload
from tests.helpers import message, task

MBPS = 1e6


def _energy(devices, tasks, messages, network, powers, multicast=False):
    """The energy table of a hand-built one-frame workload (source devices[0], sink the last)."""
    wl = Workload(tuple(devices), 0, len(devices) - 1, 1, tuple(tasks), tuple(messages))
    tl = simulate(wl, [DeviceRate(1e9)] * len(devices), network, [0.0], multicast=multicast)
    makespan = max(tl.frame_done_s) - min(tl.frame_arrival_s)
    return energy_table(wl, tl, powers).set_index(pd.Index(devices, name="device")), makespan


def test_two_device_mesh_closed_form() -> None:
    """a computes 2 MFLOP (2 ms at 1 GFLOP/s), sends 1,000 bytes to b (1 ms at 8 Mbit/s, no latency), b
    computes 1 MFLOP (1 ms): makespan 4 ms. By hand, in joules:
    a: compute 0.002*3, idle 0.002*1, tx 8000 bits*100 nJ, tail 0.5 ms*2 W after its send ends (3 ms);
    b: compute 0.001*5, idle 0.003*2, rx 8000*20 nJ, tail 1 ms*1 W after the arrival."""
    a = PowerSpec(idle_w=1, busy_w=3, tx_nj_per_bit=100, rx_nj_per_bit=50, tail_s=0.5e-3, tail_w=2)
    b = PowerSpec(idle_w=2, busy_w=5, tx_nj_per_bit=10, rx_nj_per_bit=20, tail_s=1e-3, tail_w=1)
    tasks = [task(0, 2e6), task(1, 1e6, final=True)]
    msgs = [message(0, 1, 1000, after=0, needed_by=(1,))]
    table, makespan = _energy(["a", "b"], tasks, msgs, Network.mesh(["a", "b"], 8 * MBPS, 0.0), [a, b])
    assert makespan == pytest.approx(4e-3)
    want = {
        "a": {"compute_j": 0.006, "idle_j": 0.002, "tx_j": 8e-4, "rx_j": 0.0, "tail_j": 1e-3},
        "b": {"compute_j": 0.005, "idle_j": 0.006, "tx_j": 0.0, "rx_j": 1.6e-4, "tail_j": 1e-3},
    }
    for name, parts in want.items():
        for column, joules in parts.items():
            assert table.loc[name, column] == pytest.approx(joules, abs=1e-12), (name, column)
        assert table.loc[name, "energy_j"] == pytest.approx(sum(parts.values()))
    assert list(table.columns) == ENERGY_COLUMNS


def test_tails_closer_than_tail_s_merge() -> None:
    """Sends ending at 1.0 s and 1.3 s with a 0.5 s tail: the radio stays up from 1.0 to 1.8 s (0.8 s, not
    1.0 s); one more at 3.0 s adds 0.5 s. At 2 W: 2.6 J."""
    link = Link("a", "b", 8e6, 0.0)
    hops = [Hop(0, link, 0.9, 1.0, 0), Hop(1, link, 1.2, 1.3, 0), Hop(2, link, 2.9, 3.0, 0)]
    power = PowerSpec(idle_w=0, busy_w=0, tail_s=0.5, tail_w=2)
    radio = radio_energy(["a", "b"], [power, None], hops, [[1], [1], [1]])
    assert radio["a"].tail_j == pytest.approx(2.6)
    assert union_s([(1.0, 1.5), (1.3, 1.8), (3.0, 3.5)]) == pytest.approx(1.3)
    assert union_s([(0.0, 1.0), (0.2, 0.5)]) == pytest.approx(1.0)  # one inside another


def test_a_relay_on_a_line_pays_receiving_and_sending() -> None:
    """a -> r -> b on a line, 1,000 bytes: a sends 8,000 bits, r receives and sends them, b receives."""
    power = PowerSpec(idle_w=0, busy_w=0, tx_nj_per_bit=100, rx_nj_per_bit=10)
    tasks = [task(0, 1e3), task(2, 1e3, final=True)]
    msgs = [message(0, 2, 1000, after=0, needed_by=(1,))]
    net = Network.build(["a", "r", "b"], "line", 8 * MBPS, 0.0)
    table, _ = _energy(["a", "r", "b"], tasks, msgs, net, [power] * 3)
    assert table.loc["a", ["tx_j", "rx_j"]].tolist() == pytest.approx([8e-4, 0.0])
    assert table.loc["r", ["tx_j", "rx_j"]].tolist() == pytest.approx([8e-4, 8e-5])
    assert table.loc["b", ["tx_j", "rx_j"]].tolist() == pytest.approx([0.0, 8e-5])


def test_on_the_shared_medium_only_the_destination_receives_and_a_multicast_reaches_each() -> None:
    """a sends 1,000 bytes to b over one shared medium: c hears nothing it pays for. The same payload for
    b and c as one multicast: a sends once, b and c each receive the 8,000 bits."""
    power = PowerSpec(idle_w=0, busy_w=0, tx_nj_per_bit=100, rx_nj_per_bit=10)
    net = Network.build(["a", "b", "c"], "shared", 8 * MBPS, 0.0)
    tasks = [task(0, 1e3), task(1, 1e3), task(2, 1e3, final=True)]
    one = [message(0, 1, 1000, after=0, needed_by=(1,)), message(1, 2, 4, after=1, needed_by=(2,))]
    table, _ = _energy(["a", "b", "c"], tasks, one, net, [power] * 3)
    assert table.loc["a", "tx_j"] == pytest.approx(8e-4)
    assert table.loc["c", "rx_j"] == pytest.approx(32 * 10e-9)  # only the 4-byte message from b
    both = [
        message(0, 1, 1000, after=0, needed_by=(1,), tensor="x", channel_ids=(0,)),
        message(0, 2, 1000, after=0, needed_by=(2,), tensor="x", channel_ids=(0,)),
    ]
    tasks = [task(0, 1e3), task(1, 1e3, final=True), task(2, 1e3, final=True)]
    table, _ = _energy(["a", "b", "c"], tasks, both, net, [power] * 3, multicast=True)
    assert table.loc["a", "tx_j"] == pytest.approx(8e-4)  # one transmission
    assert table.loc["b", "rx_j"] == pytest.approx(8e-5)
    assert table.loc["c", "rx_j"] == pytest.approx(8e-5)


def test_protocol_headers_count_on_the_wire() -> None:
    """TCP adds 66 bytes to a 1,000-byte message (one segment): 1,066 bytes = 8,528 bits at 100 nJ/bit."""
    power = PowerSpec(idle_w=0, busy_w=0, tx_nj_per_bit=100)
    net = Network.build(["a", "b"], "mesh", 8 * MBPS, 0.0, protocol=TCP)
    tasks = [task(0, 1e3), task(1, 1e3, final=True)]
    table, _ = _energy(["a", "b"], tasks, [message(0, 1, 1000, after=0, needed_by=(1,))], net, [power, None])
    assert table.loc["a", "tx_j"] == pytest.approx(8528 * 100e-9)
    assert table.loc["b"].isna().all()  # no power: no figures


def test_presets_hold_their_cited_numbers() -> None:
    """LEAF / PureEdgeSim radio defaults after Huang et al. (MobiSys'12); Pi 4 about 2.7 W idle, 6.4 W busy."""
    wifi, lte = POWER_PRESETS["wifi-pi4"], POWER_PRESETS["lte-phone"]
    assert (wifi["tx_nj_per_bit"], wifi["rx_nj_per_bit"]) == (283.17, 137.01)
    assert (lte["tx_nj_per_bit"], lte["rx_nj_per_bit"]) == (438.4, 51.97)
    assert (wifi["idle_w"], wifi["busy_w"]) == (2.7, 6.4)
    assert (lte["tail_s"], lte["tail_w"]) == (11.576, 1.06)
    for name, figures in POWER_PRESETS.items():
        assert PowerSpec(**figures).model_dump(exclude_defaults=True) == figures, name


def test_a_run_reports_energy_only_when_a_device_has_power() -> None:
    """summary energy_j is the sum of devices.csv's energy_j; without power no energy key or column."""
    import sim
    from tests.helpers import scenario_dict

    data = scenario_dict(2, inputs={"dataset": "synthetic"})
    plain = sim.run(data)
    assert "energy_j" not in plain.summary and "energy_j" not in plain.devices.columns
    data["devices"][0]["power"] = "wifi-pi4"
    powered = sim.run(data)
    assert powered.record.energy_j == pytest.approx(powered.devices["energy_j"].sum())
    assert powered.devices["energy_j"].isna().tolist() == [False, True]
    d0 = powered.devices.iloc[0]
    assert d0["compute_j"] == pytest.approx(d0["busy_s"] * 6.4)
    assert d0["idle_j"] == pytest.approx(d0["idle_s"] * 2.7)
    sent = powered.transfers.loc[powered.transfers["src"] == "d0", "bytes"].sum()
    assert d0["tx_j"] == pytest.approx(sent * 8 * 283.17e-9)
    assert powered.summary["energy_j_per_frame"] == pytest.approx(powered.record.energy_j)  # one frame
