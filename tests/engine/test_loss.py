"""Lossy and jittery links (sim.engine.loss) against closed forms worked out by hand: the cost of one lost
packet, retransmissions per packet against 1/(1-p), Gilbert-Elliott's stationary loss, jitter quantiles,
the shared medium's backoff, per-link streams and determinism (hand-built workloads, no torch)."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterator

import numpy as np
import pytest

from sim.engine import loss
from sim.engine.devices import DeviceRate
from sim.engine.loss import Bernoulli, Channels, GilbertElliott, Impairment, Jitter
from sim.engine.network import TCP, Network
from sim.engine.simulate import simulate
from sim.workload.types import Workload
from tests import helpers

MBPS = 1e6
T_FULL = 1514 * 8 / 1e6  # one full TCP packet (1448 payload bytes) at 1 Mbit/s
L = 0.001  # link latency, s
RTO = 0.2
message = functools.partial(helpers.message, final=True)


def run(net: Network, messages, arrivals=(0.0,), seed: int = 0):
    names = tuple(net.devices)
    wl = Workload(names, 0, 0, len(arrivals), (), tuple(messages))
    return simulate(wl, [DeviceRate(1e9)] * len(names), net, list(arrivals), seed=seed)


def tcp_pair(impairment: Impairment, topology: str = "mesh", n: int = 2) -> Network:
    return Network.build([f"d{i}" for i in range(n)], topology, 1 * MBPS, L, protocol=TCP, impairment=impairment)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    """Make every impaired link lose exactly the transmissions listed (by their order on the link)."""

    def script(lost: set[int]) -> None:
        counter: Iterator[int] = iter(range(10**6))
        monkeypatch.setattr(loss._Channel, "lost", lambda self, model: next(counter) in lost)

    return script


def test_a_lost_packet_with_three_after_it_costs_one_round_trip(scripted) -> None:
    # 7 full packets back to back: packet 3 ends at 4t, its 3 successors by 7t, whose third duplicate ACK is
    # back at 7t + 2L; the retransmission then goes (the queue is free since 7t): it ends at 8t + 2L and
    # arrives at 8t + 3L, against 7t + L without the loss: one round trip, t + 2L, later.
    scripted({3})
    tl = run(tcp_pair(Impairment(Bernoulli(0.5))), [message(0, 1, 7 * 1448)])
    assert tl.message_end_s == [pytest.approx(8 * T_FULL + 3 * L)]
    assert tl.message_end_s[0] - (7 * T_FULL + L) == pytest.approx(T_FULL + 2 * L)
    assert tl.retransmissions == [1] and len(tl.hops) == 8


def test_a_lost_last_packet_waits_for_the_retransmission_timeout(scripted) -> None:
    # Packet 6 of 7 (none after it) ends at 7t and is sent again RTO later: it arrives at 8t + RTO + L.
    scripted({6})
    tl = run(tcp_pair(Impairment(Bernoulli(0.5), rto_s=RTO)), [message(0, 1, 7 * 1448)])
    assert tl.message_end_s == [pytest.approx(8 * T_FULL + RTO + L)]
    assert tl.message_end_s[0] - (7 * T_FULL + L) == pytest.approx(RTO + T_FULL)


def test_a_loss_with_two_packets_after_it_also_waits_for_the_timeout(scripted) -> None:
    # Packet 4 of 7 ends at 5t; only two duplicate ACKs follow, so it goes again at 5t + RTO, arriving at
    # 6t + RTO + L, after the rest of the message (7t + L).
    scripted({4})
    tl = run(tcp_pair(Impairment(Bernoulli(0.5), rto_s=RTO)), [message(0, 1, 7 * 1448)])
    assert tl.message_end_s == [pytest.approx(6 * T_FULL + RTO + L)]


def test_a_lost_retransmission_backs_off_to_twice_the_timeout(scripted) -> None:
    # A one-packet message (t0 = 1066 wire bytes) lost twice: it goes at 0, t0 + RTO, and 2 t0 + 3 RTO.
    scripted({0, 1})
    t0 = (1000 + 66) * 8 / 1e6
    tl = run(tcp_pair(Impairment(Bernoulli(0.5), rto_s=RTO)), [message(0, 1, 1000)])
    assert [h.start_s for h in tl.hops] == pytest.approx([0.0, t0 + RTO, 2 * t0 + 3 * RTO])
    assert tl.message_end_s == [pytest.approx(3 * t0 + 3 * RTO + L)] and tl.retransmissions == [2]


def test_the_shared_medium_retries_after_a_backoff_of_whole_slots(scripted) -> None:
    # No protocol: the 1000-byte message is one frame (8 ms). Lost once, it is retried after k slots of 9 us,
    # k in 0..15 (the first contention window), so it arrives at 2 * 8 ms + k * 9 us + L.
    scripted({0})
    net = Network.build(["a", "b", "c"], "shared", 1 * MBPS, L, impairment=Impairment(Bernoulli(0.5)))
    end = run(net, [message(0, 1, 1000)]).message_end_s[0]
    k = (end - 2 * 0.008 - L) / 9e-6
    assert 0 <= round(k) <= 15 and k == pytest.approx(round(k), abs=1e-6)


def test_transmissions_per_packet_approach_one_over_one_minus_p() -> None:
    # 40 messages of 500 full packets, each transmission lost with p = 0.1: a packet needs a geometric
    # number of transmissions, mean 1/(1-p) = 1.111 (standard deviation of the mean over 20000 packets:
    # sqrt(p)/(1-p)/sqrt(20000) = 0.0025; the tolerance is 4 of them).
    p, packets = 0.1, 40 * 500
    net = tcp_pair(Impairment(Bernoulli(p)))
    tl = run(net, [message(0, 1, 500 * 1448, frame=f) for f in range(40)], arrivals=[0.0] * 40, seed=7)
    assert len(tl.hops) / packets == pytest.approx(1 / (1 - p), abs=0.01)
    assert sum(tl.retransmissions) == len(tl.hops) - packets


def test_gilbert_elliott_loses_its_stationary_share_over_a_long_run() -> None:
    # p = 0.05, r = 0.3, 1-k = 0.01, 1-h = 0.6: (r(1-k) + p(1-h)) / (p + r) = (0.003 + 0.03) / 0.35 = 0.0943.
    model = GilbertElliott(p_good_bad=0.05, p_bad_good=0.3, loss_good=0.01, loss_bad=0.6)
    assert model.mean_loss == pytest.approx((0.3 * 0.01 + 0.05 * 0.6) / 0.35)
    channels, n = Channels(seed=3), 100_000
    lost = sum(channels.transmit(Impairment(model), "a->b", L, False, 0, 0, 1e-3)[0] is not None for _ in range(n))
    assert lost / n == pytest.approx(0.0943, rel=0.07)  # sd of the share ~2 % (bursts correlate the draws)


def test_gilbert_elliott_losses_come_in_bursts() -> None:
    # In the bad state (left with probability r = 0.1 per transmission) every transmission is lost, so a
    # burst of losses lasts 1/r = 10 transmissions on average; Bernoulli loss at the same mean rate gives
    # bursts of 1/(1 - mean) ~ 1.
    model = GilbertElliott(p_good_bad=0.01, p_bad_good=0.1, loss_good=0.0, loss_bad=1.0)
    channels = Channels(seed=1)
    outcomes = [channels.transmit(Impairment(model), "x", 0.0, False, 0, 0, 0.0)[0] is not None for _ in range(50_000)]
    bursts = [len(run) for run in "".join("1" if o else "0" for o in outcomes).split("0") if run]
    assert np.mean(bursts) == pytest.approx(10, rel=0.15)


def test_jitter_quantiles_match_their_distributions() -> None:
    # z = 1.6449 is the 95th percentile of the standard normal.
    z95 = 1.6448536269514722
    assert Jitter("normal", 0.002, 0.001).seconds(z95) == pytest.approx(0.002 + 0.001 * z95)
    assert Jitter("uniform", 0.001, 0.004).seconds(z95) == pytest.approx(0.001 + 0.95 * 0.004)
    # Lomax: P(X > x) = (1 + x)^-a, so the 95th percentile is 0.05^(-1/a) - 1.
    assert Jitter("pareto", 0.0, 0.001, shape=2.5).seconds(z95) == pytest.approx(0.001 * (0.05 ** (-1 / 2.5) - 1))


def test_jitter_delays_arrivals_by_its_mean_and_keeps_its_correlation() -> None:
    # Uniform on [1, 3] ms (mean 2 ms) added to L on 5000 one-packet messages sent 1 s apart (no queueing):
    # mean arrival delay L + 2 ms (sd of the mean 0.58 ms / sqrt(5000) = 8 us). With correlation 0.8 the
    # consecutive delays stay uniform (same mean) but correlate (rank correlation of the latent AR(1)
    # sequence: 6/pi asin(0.8/2) = 0.786; sd of the estimate about 0.014).
    n = 5000
    for rho in (0.0, 0.8):
        imp = Impairment(jitter=Jitter("uniform", 0.001, 0.002, correlation=rho))
        net = Network.build(["a", "b"], "mesh", 1e9, L, impairment=imp)
        tl = run(net, [message(0, 1, 0, frame=f) for f in range(n)], arrivals=[float(f) for f in range(n)])
        delays = np.asarray(tl.message_end_s) - np.arange(n)
        assert delays.mean() == pytest.approx(L + 0.002, abs=3e-5)
        assert delays.min() >= L + 0.001 and delays.max() <= L + 0.003
        ranks = np.argsort(np.argsort(delays))
        assert np.corrcoef(ranks[:-1], ranks[1:])[0, 1] == pytest.approx(6 / math.pi * math.asin(rho / 2), abs=0.05)


def test_same_seed_same_timeline_and_another_seed_another() -> None:
    imp = Impairment(Bernoulli(0.05), Jitter("normal", 0.0, 0.0005))
    msgs = [message(0, 1, 30_000, frame=f) for f in range(5)]
    a, b = (run(tcp_pair(imp), msgs, arrivals=[0.0] * 5, seed=11) for _ in range(2))
    c = run(tcp_pair(imp), msgs, arrivals=[0.0] * 5, seed=12)
    assert a.message_end_s == b.message_end_s and a.hops == b.hops and a.retransmissions == b.retransmissions
    assert a.message_end_s != c.message_end_s


def test_each_link_draws_from_its_own_stream() -> None:
    # The same messages d0 -> d1 on a 2-device mesh and on a 3-device mesh (two more links, which also carry
    # traffic): the d0->d1 link draws the same losses, so the d0 -> d1 timings are the same.
    imp = Impairment(Bernoulli(0.2))
    two = run(tcp_pair(imp), [message(0, 1, 20_000)], seed=5)
    three = run(tcp_pair(imp, n=3), [message(0, 1, 20_000), message(0, 2, 20_000, frame=0)], seed=5)
    assert three.message_end_s[0] == two.message_end_s[0] and three.retransmissions[0] == two.retransmissions[0]
    assert two.retransmissions[0] > 0


def test_a_lossy_run_leaves_the_global_generators_alone() -> None:
    np.random.seed(1234)
    random.seed(1234)
    before = (np.random.get_state()[1].copy(), random.getstate())
    run(tcp_pair(Impairment(Bernoulli(0.3), Jitter("pareto", 0.0, 0.001, shape=2.0))), [message(0, 1, 50_000)])
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]


def test_perfect_links_have_no_retransmission_counts() -> None:
    tl = run(Network.build(["a", "b"], "mesh", 1 * MBPS, L, protocol=TCP), [message(0, 1, 5000)])
    assert tl.retransmissions == []
