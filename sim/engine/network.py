"""The network between devices: topologies, directed links with their FIFO queues, and fewest-hop routes.

Every link direction has a rate (bit/s) and a propagation delay (s) and uses one FIFO **queue**: its own
for a full-duplex link (``a->b``), one shared by both directions of a half-duplex link (``a<->b``), and
one for all transmissions on a shared wireless medium (``medium``). Topologies (docs/design.md §3.8):

* ``mesh``: a link between every pair of devices;
* ``star``: every device linked to a switch node named ``switch`` (not a device);
* ``ring`` and ``line``: neighbours in scenario device order (a ring also joins the last to the first);
* ``custom``: the edges listed in ``network.links`` and/or a GraphML file (``network.graphml``);
* ``shared``: every pair of devices one hop apart, all on the one ``medium`` queue.

Routes are store-and-forward over the fewest-hop path. Ties go to the path found by breadth-first search
from the sender that visits neighbours in scenario device order (the switch last). This module does not
import torch.

Example::

    >>> net = Network.mesh(["a", "b", "c"], bandwidth_bps=1e6, latency_s=0.001)
    >>> [(l.src, l.dst) for l in net.route("a", "c")]
    [('a', 'c')]
    >>> [l.name for l in Network.build(["a", "b", "c"], "line", 1e6, 0.0).route("a", "c")]
    ['a->b', 'b->c']
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache, cached_property
from typing import Any

import networkx as nx

from sim.engine.loss import Impairment
from sim.errors import UserError
from sim.topology import MEDIUM, topology_edges

ETHERNET_HEADER_BYTES = 14  # the link-layer frame header: on the wire, outside the MTU


@dataclass(frozen=True)
class Protocol:
    """How a message becomes packets on the wire (``network.protocol``).

    A message of ``n`` payload bytes gains ``message_header_bytes`` (the application's header), is cut
    into packets carrying at most :attr:`segment_bytes` of it each, and every packet costs its payload plus
    ``packet_header_bytes`` on the wire. ``mtu_bytes`` is the largest packet the link layer carries, as
    ``ip link`` shows it (IP header and payload); the 14-byte Ethernet header counted in
    ``packet_header_bytes`` lies outside it, so a packet carries ``mtu_bytes + 14 - packet_header_bytes``
    payload bytes. :data:`TCP` (1500 / 66 / 0) gives 1448-byte segments costing 1514 bytes each, which is
    what Linux ``tc`` counts (no preamble, gap or frame check sequence).

    Example::

        >>> TCP.segment_bytes, TCP.packets(3000)
        (1448, [1514, 1514, 170])
        >>> TCP.wire_bytes(3000)
        3198
    """

    mtu_bytes: int
    packet_header_bytes: int
    message_header_bytes: int = 0

    def __post_init__(self) -> None:
        if self.segment_bytes < 1:
            raise ValueError(
                f"protocol: mtu_bytes {self.mtu_bytes} + {ETHERNET_HEADER_BYTES} - packet_header_bytes "
                f"{self.packet_header_bytes} leaves no payload in a packet"
            )

    @property
    def segment_bytes(self) -> int:
        """Payload bytes one full packet carries."""
        return self.mtu_bytes + ETHERNET_HEADER_BYTES - self.packet_header_bytes

    def packets(self, nbytes: int) -> list[int]:
        """Wire bytes of each packet of a message of ``nbytes`` payload bytes (at least one packet)."""
        total = nbytes + self.message_header_bytes
        full, rest = divmod(total, self.segment_bytes)
        sizes = [self.segment_bytes + self.packet_header_bytes] * full
        if rest or not sizes:
            sizes.append(rest + self.packet_header_bytes)
        return sizes

    def wire_bytes(self, nbytes: int) -> int:
        """Bytes on the wire of a message of ``nbytes`` payload bytes: payload, its header, packet headers."""
        total = nbytes + self.message_header_bytes
        return total + max(1, math.ceil(total / self.segment_bytes)) * self.packet_header_bytes


def _protocol_name(protocol: Protocol | None) -> str:
    """``tcp``, ``none`` or the protocol's three numbers, for messages."""
    if protocol is None:
        return "none"
    named = [name for name, p in PROTOCOLS.items() if p == protocol]
    return named[0] if named else f"{protocol.mtu_bytes}/{protocol.packet_header_bytes}/{protocol.message_header_bytes}"


TCP = Protocol(mtu_bytes=1500, packet_header_bytes=66, message_header_bytes=0)  # TCP/IPv4 with timestamps on Ethernet
PROTOCOLS = {"tcp": TCP}


@dataclass(frozen=True)
class Link:
    """One direction of a link: ``src`` to ``dst`` at ``bandwidth_bps``, arriving ``latency_s`` later.

    ``queue`` names the FIFO it waits in (``""`` means its own, ``src->dst``); ``overhead_s`` is added to
    every transmission (medium access). ``protocol`` cuts messages into packets (``None``: a message, or
    a chunk, is one transmission of its payload bytes). ``burst_bytes`` is the bucket of a token-bucket
    shaper at the link rate (Linux ``tc tbf``): with a full bucket the first ``burst_bytes`` go at once,
    then the bucket refills at ``bandwidth_bps``; ``None``: no shaper, every byte takes ``8/bandwidth_bps``.
    ``impairment`` loses and delays transmissions (:mod:`sim.engine.loss`; ``None``: a perfect link).
    """

    src: str
    dst: str
    bandwidth_bps: float
    latency_s: float
    queue: str = ""
    overhead_s: float = 0.0
    protocol: Protocol | None = None
    burst_bytes: int | None = None
    impairment: Impairment | None = None

    @property
    def name(self) -> str:
        """``src->dst``, as used in result tables and traces."""
        return f"{self.src}->{self.dst}"

    @cached_property
    def queue_name(self) -> str:
        """The FIFO queue this direction uses: ``src->dst``, ``a<->b`` (half duplex) or ``medium``."""
        return self.queue or self.name

    def transmit_s(self, nbytes: int) -> float:
        """Time the queue is held to put ``nbytes`` on the wire (plus the access overhead), in seconds,
        without a shaper (or with an empty bucket)."""
        return nbytes * 8 / self.bandwidth_bps + self.overhead_s

    def wire_sizes(self, nbytes: int, chunk_bytes: int | None = None) -> list[int]:
        """Wire bytes of each transmission of a message of ``nbytes``: its packets with a protocol, else its
        chunks of ``chunk_bytes`` (or the whole message)."""
        if self.protocol is not None:
            return self.protocol.packets(nbytes)
        return chunk_sizes(nbytes, chunk_bytes)


def chunk_sizes(nbytes: int, chunk_bytes: int | None) -> list[int]:
    """Sizes of the chunks a message of ``nbytes`` travels as: full chunks, then the remainder.

    >>> chunk_sizes(2500, 1000)
    [1000, 1000, 500]
    """
    if chunk_bytes is None or nbytes <= chunk_bytes:
        return [nbytes]
    full, rest = divmod(nbytes, chunk_bytes)
    return [chunk_bytes] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class LinkParams:
    """Properties of one undirected edge ``a``--``b``: rate ``a->b`` (up) and ``b->a`` (down), delay, duplex."""

    up_bps: float
    down_bps: float
    latency_s: float
    duplex: str = "full"
    protocol: Protocol | None = None
    burst_bytes: int | None = None
    impairment: Impairment | None = None


class Network:
    """Devices (and any switch node) joined by directed links, stored as edge attribute ``link``."""

    def __init__(self, graph: nx.DiGraph, devices: Sequence[str]):
        self.graph = graph
        self.devices = list(devices)
        order = {n: i for i, n in enumerate(self.devices)}
        self._neighbours = {
            u: sorted(graph.successors(u), key=lambda v: (order.get(v, len(order)), v)) for u in graph.nodes
        }
        self.route = cache(self._route)

    @classmethod
    def mesh(cls, devices: Sequence[str], bandwidth_bps: float, latency_s: float) -> Network:
        """A dedicated full-duplex link between every pair of devices."""
        return cls.build(devices, "mesh", bandwidth_bps, latency_s)

    @classmethod
    def build(
        cls,
        devices: Sequence[str],
        topology: str,
        bandwidth_bps: float,
        latency_s: float,
        overrides: dict[tuple[str, str], LinkParams] | None = None,
        extra_edges: Sequence[tuple[str, str]] = (),
        duplex: str = "full",
        access_overhead_s: float = 0.0,
        protocol: Protocol | None = None,
        burst_bytes: int | None = None,
        impairment: Impairment | None = None,
    ) -> Network:
        """A topology over ``devices`` with default link properties, ``overrides`` per edge (keyed by the
        edge as ``(a, b)``, ``up`` meaning ``a->b``) and, for ``custom``, ``extra_edges``.

        ``access_overhead_s`` is added to every transmission on every link; ``protocol``, ``burst_bytes`` and
        ``impairment`` are the defaults of links without an override (see :class:`Link`).
        """
        edges = topology_edges(topology, devices) + list(extra_edges)
        overrides = overrides or {}
        g: nx.DiGraph[str] = nx.DiGraph()
        g.add_nodes_from(devices)
        for a, b in edges:
            p = overrides.get((a, b))
            if p is None and (b, a) in overrides:
                q = overrides[(b, a)]
                p = replace(q, up_bps=q.down_bps, down_bps=q.up_bps)
            p = p or LinkParams(bandwidth_bps, bandwidth_bps, latency_s, duplex, protocol, burst_bytes, impairment)
            if topology == "shared":
                queue = MEDIUM
            elif p.duplex == "half":
                queue = f"{a}<->{b}"
            else:
                queue = ""
            for u, v, bps in ((a, b, p.up_bps), (b, a, p.down_bps)):
                link = Link(u, v, bps, p.latency_s, queue, access_overhead_s, p.protocol, p.burst_bytes, p.impairment)
                g.add_edge(u, v, link=link, order=len(g.edges))
        return cls(g, devices)

    def links(self) -> list[Link]:
        """Every link direction: in the order the topology lists its edges, ``a->b`` before ``b->a``."""
        edges = sorted(self.graph.edges(data=True), key=lambda e: e[2].get("order", 0))
        return [data["link"] for _, _, data in edges]

    def check_pairs(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Raise a one-line :class:`UserError` naming the first pair in ``pairs`` that has no route, or whose
        route crosses links of different protocols (packets are cut once, at the sender)."""
        for src, dst in pairs:
            route = self.route(src, dst)
            kinds = {link.protocol for link in route}
            if len(kinds) > 1:
                names = ", ".join(f"{link.name} {_protocol_name(link.protocol)}" for link in route)
                raise UserError(
                    f"network: the route {src} -> {dst} crosses links of different protocols ({names}); "
                    "give the links of a route one protocol"
                )

    def _route(self, src: str, dst: str) -> tuple[Link, ...]:
        """The links of the fewest-hop path from ``src`` to ``dst`` (BFS, neighbours in device order)."""
        parent: dict[str, str | None] = {src: None}
        frontier = [src]
        while frontier and dst not in parent:
            nxt = []
            for u in frontier:
                for v in self._neighbours.get(u, ()):
                    if v not in parent:
                        parent[v] = u
                        nxt.append(v)
            frontier = nxt
        if dst not in parent:
            raise UserError(f"network: no path from {src} to {dst}; add a link between them in network.links")
        path = [dst]
        while parent[path[-1]] is not None:
            path.append(parent[path[-1]])  # type: ignore[arg-type]
        path.reverse()
        return tuple(self.graph.edges[u, v]["link"] for u, v in itertools.pairwise(path))


class RoundRobin:
    """Transmissions waiting for one link queue, one flow (a connection) after another in turn: the head of
    the first flow goes next, and that flow moves behind the others (packets of different connections
    interleave on the wire, as concurrent TCP connections through one interface do).

    >>> q = RoundRobin()
    >>> for flow, packet in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2")]:
    ...     q.push(flow, packet)
    >>> [q.pop() for _ in range(4)]
    ['a1', 'b1', 'a2', 'b2']
    """

    def __init__(self) -> None:
        self._flows: dict[Hashable, deque[Any]] = {}

    def push(self, flow: Hashable, item: Any) -> None:
        """Queue ``item`` behind the earlier items of its ``flow``."""
        self._flows.setdefault(flow, deque()).append(item)

    def pop(self) -> Any:
        """The next item (the head of the first flow); that flow moves to the back."""
        flow = next(iter(self._flows))
        items = self._flows.pop(flow)
        item = items.popleft()
        if items:
            self._flows[flow] = items
        return item

    def __bool__(self) -> bool:
        return bool(self._flows)
