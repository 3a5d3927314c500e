"""Lossy and jittery links: which transmissions a link loses, when a lost one is sent again, and how much
extra delay each delivered one picks up.

A link direction may carry an :class:`Impairment`: a loss process (:class:`Bernoulli` or
:class:`GilbertElliott`, drawn once per transmission, retransmissions included), a delay distribution
(:class:`Jitter`: normal, uniform or Pareto, optionally correlated from one transmission to the next) and
the retransmission timeout. The engine (:mod:`sim.engine.simulate`) asks :meth:`Channels.transmit` about
every transmission on an impaired link once it has left the wire, and gets back either the time until it
joins the link's queue again (lost) or its propagation delay (delivered). Recovery (:func:`recovery_wait_s`):

* TCP (any link but the shared medium): a lost packet with at least three more packets of its message
  after it is fast-retransmitted when the third duplicate ACK comes back: ``3 * t + 2 * latency_s`` after
  it left the wire (``t``: its transmission time; the three later packets go back to back behind it and
  their ACKs take one latency back), so a lone loss with exactly three packets after it delays its message
  by one round trip, ``t + 2 * latency_s``. Any other loss (among a message's last three packets, or of a
  retransmission) waits for the retransmission timeout ``rto_s``, doubled after every timeout of the same
  packet (Linux's exponential backoff), at most :data:`RTO_MAX_S`; a lost last packet delays its message
  by ``rto_s + t``.
* The shared medium (802.11-like) retries a lost frame itself after a random backoff of ``U{0..cw}``
  slots of :data:`SLOT_S`, ``cw`` starting at :data:`CW_MIN` and doubling (plus one) after every failed
  retry up to :data:`CW_MAX`; TCP never sees the loss.

The retransmission joins the link's FIFO queue at that time, behind whatever is queued then.

Randomness: one numpy Generator per link direction and purpose (loss, jitter), seeded from the run's seed
and the link's name (:func:`link_generator`), so adding a link does not change the draws of the others
and nothing touches numpy's or torch's global generators. This module does not import torch.

Example::

    >>> GilbertElliott(p_good_bad=0.01, p_bad_good=0.3, loss_good=0.0, loss_bad=0.5).mean_loss
    0.016129032258064516
    >>> channels = Channels(seed=0)
    >>> link = ("a->b", 0.001, False)  # name, latency (s), shared medium
    >>> channels.transmit(Impairment(Bernoulli(0.0)), *link, after=0, tries=0, tx_s=1e-3)
    (None, 0.001)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RTO_MAX_S = 120.0  # Linux TCP_RTO_MAX: the backed-off timeout never exceeds it
SLOT_S = 9e-6  # 802.11 OFDM slot time
CW_MIN, CW_MAX = 15, 1023  # 802.11 contention window bounds, in slots
FAST_RETRANSMIT_AFTER = 3  # packets of the message after a loss that trigger a fast retransmit (dupacks)
_BLOCK = 256  # uniforms drawn from a generator at once


@dataclass(frozen=True)
class Bernoulli:
    """Every transmission is lost with probability ``p``, independently.

    >>> Bernoulli(0.1).mean_loss
    0.1
    """

    p: float

    @property
    def mean_loss(self) -> float:
        """Long-run share of transmissions lost."""
        return self.p


@dataclass(frozen=True)
class GilbertElliott:
    """A two-state (good, bad) Markov channel, stepped once per transmission: in the good state a
    transmission is lost with probability ``loss_good``, in the bad state with ``loss_bad``; after it the
    channel moves good -> bad with probability ``p_good_bad`` and bad -> good with ``p_bad_good``.

    In Hasslinger and Hohlfeld's notation (p = ``p_good_bad``, r = ``p_bad_good``, 1-k = ``loss_good``,
    1-h = ``loss_bad``) the stationary loss is ``(r(1-k) + p(1-h)) / (p + r)``: :attr:`mean_loss`.
    """

    p_good_bad: float
    p_bad_good: float
    loss_good: float
    loss_bad: float

    @property
    def bad_share(self) -> float:
        """Stationary probability of the bad state, ``p / (p + r)``."""
        return self.p_good_bad / (self.p_good_bad + self.p_bad_good)

    @property
    def mean_loss(self) -> float:
        """Long-run share of transmissions lost."""
        return (1 - self.bad_share) * self.loss_good + self.bad_share * self.loss_bad


LossModel = Bernoulli | GilbertElliott


@dataclass(frozen=True)
class Jitter:
    """Extra propagation delay of each delivered transmission, added to the link's latency (a total below 0
    counts as 0): ``location_s + spread_s * X`` seconds, where ``X`` is standard ``normal``, ``uniform`` on
    [0, 1], or ``pareto`` (Lomax from 0 with tail index ``shape``: ``P(X > x) = (1 + x)^-shape``, mean
    ``1 / (shape - 1)``).

    ``correlation`` in ``[0, 1)`` correlates consecutive draws on one link: a Gaussian AR(1) sequence with
    that lag-1 correlation is mapped through the distribution's quantile function, so each draw has exactly
    the distribution named whatever the correlation.

    >>> Jitter("uniform", 0.001, 0.002).seconds(0.0)  # the median, z = 0
    0.002
    """

    distribution: str
    location_s: float
    spread_s: float
    shape: float = 0.0
    correlation: float = 0.0

    def seconds(self, z: float) -> float:
        """The draw whose standard normal score is ``z`` (the quantile at ``Phi(z)``)."""
        if self.distribution == "normal":
            x = z
        elif self.distribution == "uniform":
            x = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
        else:
            tail = max(0.5 * math.erfc(z / math.sqrt(2.0)), 1e-300)  # 1 - Phi(z), exact in the upper tail
            x = tail ** (-1.0 / self.shape) - 1.0
        return self.location_s + self.spread_s * x


@dataclass(frozen=True)
class Impairment:
    """What a link does to transmissions beyond its rate and latency: loss (``None``: none), jitter
    (``None``: none) and the TCP retransmission timeout ``rto_s`` (seconds)."""

    loss: LossModel | None = None
    jitter: Jitter | None = None
    rto_s: float = 0.2


Seed = int | tuple[int, ...]  # a run's seed: the scenario's, or (scenario seed, frame) for a frame run alone


def link_generator(seed: Seed, link: str, purpose: int) -> np.random.Generator:
    """The generator of one link direction (by name) and purpose (0 loss, 1 jitter) in a run seeded ``seed``.

    >>> float(link_generator(0, "a->b", 0).random()) == float(link_generator(0, "a->b", 0).random())
    True
    """
    key = int.from_bytes(hashlib.blake2b(link.encode(), digest_size=8).digest(), "little")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key, purpose))))


class _Draws:
    """Numbers from one generator (``rng.random``: uniform [0, 1); ``rng.standard_normal``), drawn in blocks
    of :data:`_BLOCK` (the same sequence as one at a time, with less overhead per number)."""

    __slots__ = ("_block", "_draw", "_i")

    def __init__(self, draw: Callable[[int], np.ndarray]):
        self._draw, self._i = draw, 0
        self._block: list[float] = []

    def next(self) -> float:
        if self._i == len(self._block):
            self._block, self._i = self._draw(_BLOCK).tolist(), 0
        self._i += 1
        return self._block[self._i - 1]


class _Channel:
    """The random state of one impaired link direction during a run."""

    __slots__ = ("bad", "loss", "normal", "z")

    def __init__(self, seed: Seed, name: str, impairment: Impairment):
        self.loss = _Draws(link_generator(seed, name, 0).random)
        self.normal = _Draws(link_generator(seed, name, 1).standard_normal)
        model = impairment.loss
        self.bad = isinstance(model, GilbertElliott) and self.loss.next() < model.bad_share  # stationary start
        self.z: float | None = None  # the last jitter score (correlated jitter)

    def lost(self, model: LossModel) -> bool:
        if isinstance(model, Bernoulli):
            return self.loss.next() < model.p
        lost = self.loss.next() < (model.loss_bad if self.bad else model.loss_good)
        if self.loss.next() < (model.p_bad_good if self.bad else model.p_good_bad):
            self.bad = not self.bad
        return lost

    def jitter_s(self, jitter: Jitter) -> float:
        e = self.normal.next()
        rho = jitter.correlation
        self.z = e if self.z is None or rho == 0.0 else rho * self.z + math.sqrt(1.0 - rho * rho) * e
        return jitter.seconds(self.z)


def recovery_wait_s(
    impairment: Impairment, latency_s: float, shared: bool, after: int, tries: int, tx_s: float, u: float
) -> float:
    """Seconds from the end of a lost transmission until it joins its link's queue again (module docstring).

    ``after``: packets of its message after it; ``tries``: how many times this packet was already lost on
    this link; ``tx_s``: its transmission time; ``u``: a uniform [0, 1) draw (the medium's backoff).

    >>> imp = Impairment(Bernoulli(0.1), rto_s=0.2)
    >>> recovery_wait_s(imp, 0.001, False, after=3, tries=0, tx_s=0.0005, u=0.0)  # 3 t + 2 latency
    0.0035
    >>> recovery_wait_s(imp, 0.001, False, after=2, tries=1, tx_s=0.0005, u=0.0)  # second timeout: 2 RTO
    0.4
    >>> recovery_wait_s(imp, 0.001, False, after=3, tries=1, tx_s=0.0005, u=0.0)  # fast, then a timeout
    0.2
    """
    if shared:
        cw = min(CW_MAX, (CW_MIN + 1) * 2**tries - 1)
        return SLOT_S * math.floor(u * (cw + 1))
    fast = after >= FAST_RETRANSMIT_AFTER  # its first loss was fast-retransmitted
    if tries == 0 and fast:
        return FAST_RETRANSMIT_AFTER * tx_s + 2 * latency_s
    timeouts = tries - 1 if fast else tries  # timeouts this packet already had
    return min(RTO_MAX_S, impairment.rto_s * 2.0 ** min(timeouts, 30))


class Channels:
    """The random state of every impaired link of one run (created as links are first used)."""

    def __init__(self, seed: Seed):
        self.seed = seed
        self._state: dict[str, _Channel] = {}

    def transmit(
        self, impairment: Impairment, name: str, latency_s: float, shared: bool, after: int, tries: int, tx_s: float
    ) -> tuple[float | None, float]:
        """The outcome of one transmission on link ``name`` that just left the wire: ``(recovery wait in
        seconds, 0.0)`` when it is lost, ``(None, propagation delay in seconds)`` when it is delivered
        (``latency_s`` plus jitter, at least 0). ``shared``: the link is on the shared medium; ``after``,
        ``tries`` and ``tx_s`` are as for :func:`recovery_wait_s`."""
        channel = self._state.get(name)
        if channel is None:
            channel = self._state[name] = _Channel(self.seed, name, impairment)
        if impairment.loss is not None and channel.lost(impairment.loss):
            u = channel.loss.next() if shared else 0.0
            return recovery_wait_s(impairment, latency_s, shared, after, tries, tx_s, u), 0.0
        if impairment.jitter is None:
            return None, latency_s
        return None, max(0.0, latency_s + channel.jitter_s(impairment.jitter))
