"""The network between devices: topologies, directed links with their FIFO queues, and fewest-hop routes.

Every link direction has a rate (bit/s) and a propagation delay (s) and uses one FIFO **queue**: its own
for a full-duplex link (``a->b``), one shared by both directions of a half-duplex link (``a<->b``), and
one for all transmissions on a shared wireless medium (``medium``). Topologies (DESIGN section 3):

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property

import networkx as nx

from sim.errors import UserError
from sim.topology import MEDIUM, topology_edges


@dataclass(frozen=True)
class Link:
    """One direction of a link: ``src`` to ``dst`` at ``bandwidth_bps``, arriving ``latency_s`` later.

    ``queue`` names the FIFO it waits in (``""`` means its own, ``src->dst``); ``overhead_s`` is added to
    every transmission (medium access).
    """

    src: str
    dst: str
    bandwidth_bps: float
    latency_s: float
    queue: str = ""
    overhead_s: float = 0.0

    @property
    def name(self) -> str:
        """``src->dst``, as used in result tables and traces."""
        return f"{self.src}->{self.dst}"

    @cached_property
    def queue_name(self) -> str:
        """The FIFO queue this direction uses: ``src->dst``, ``a<->b`` (half duplex) or ``medium``."""
        return self.queue or self.name

    def transmit_s(self, nbytes: int) -> float:
        """Time the queue is held to put ``nbytes`` on the wire (plus the access overhead), in seconds."""
        return nbytes * 8 / self.bandwidth_bps + self.overhead_s


@dataclass(frozen=True)
class LinkParams:
    """Properties of one undirected edge ``a``--``b``: rate ``a->b`` (up) and ``b->a`` (down), delay, duplex."""

    up_bps: float
    down_bps: float
    latency_s: float
    duplex: str = "full"


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
    ) -> Network:
        """A topology over ``devices`` with default link properties, ``overrides`` per edge (keyed by the
        edge as ``(a, b)``, ``up`` meaning ``a->b``) and, for ``custom``, ``extra_edges``.

        ``access_overhead_s`` is added to every transmission on every link.
        """
        edges = topology_edges(topology, devices) + list(extra_edges)
        overrides = overrides or {}
        g: nx.DiGraph[str] = nx.DiGraph()
        g.add_nodes_from(devices)
        for a, b in edges:
            p = overrides.get((a, b))
            if p is None and (b, a) in overrides:
                q = overrides[(b, a)]
                p = LinkParams(q.down_bps, q.up_bps, q.latency_s, q.duplex)
            p = p or LinkParams(bandwidth_bps, bandwidth_bps, latency_s, duplex)
            if topology == "shared":
                queue = MEDIUM
            elif p.duplex == "half":
                queue = f"{a}<->{b}"
            else:
                queue = ""
            g.add_edge(a, b, link=Link(a, b, p.up_bps, p.latency_s, queue, access_overhead_s), order=len(g.edges))
            g.add_edge(b, a, link=Link(b, a, p.down_bps, p.latency_s, queue, access_overhead_s), order=len(g.edges))
        return cls(g, devices)

    def links(self) -> list[Link]:
        """Every link direction: in the order the topology lists its edges, ``a->b`` before ``b->a``."""
        edges = sorted(self.graph.edges(data=True), key=lambda e: e[2].get("order", 0))
        return [data["link"] for _, _, data in edges]

    def check_pairs(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Raise a one-line :class:`UserError` naming the first pair in ``pairs`` that has no route."""
        for src, dst in pairs:
            self.route(src, dst)

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
