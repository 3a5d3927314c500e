"""The network between devices: a networkx graph of directed links, and fewest-hop routes over it.

Every direction of every link is its own FIFO queue with a rate (bit/s) and a propagation delay (s).
Routes are store-and-forward over the fewest-hop path; ties are broken deterministically by breadth-first
search in scenario device order. This module does not import torch.

Example::

    >>> net = Network.mesh(["a", "b", "c"], bandwidth_bps=1e6, latency_s=0.001)
    >>> [(l.src, l.dst) for l in net.route("a", "c")]
    [('a', 'c')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import networkx as nx

from sim.errors import UserError


@dataclass(frozen=True)
class Link:
    """One direction of a link: ``src`` to ``dst`` at ``bandwidth_bps``, arriving ``latency_s`` later."""

    src: str
    dst: str
    bandwidth_bps: float
    latency_s: float

    @property
    def name(self) -> str:
        """``src->dst``, as used in result tables and traces."""
        return f"{self.src}->{self.dst}"

    def transmit_s(self, nbytes: int) -> float:
        """Time the link is held to put ``nbytes`` on the wire, in seconds."""
        return nbytes * 8 / self.bandwidth_bps


class Network:
    """Devices (and any switch nodes) joined by directed links, stored as edge attribute ``link``."""

    def __init__(self, graph: nx.DiGraph, devices: Sequence[str]):
        self.graph = graph
        self.devices = list(devices)
        self.route = cache(self._route)

    @classmethod
    def mesh(cls, devices: Sequence[str], bandwidth_bps: float, latency_s: float) -> Network:
        """A dedicated full-duplex link between every pair of devices."""
        g = nx.DiGraph()
        g.add_nodes_from(devices)
        for u in devices:
            for v in devices:
                if u != v:
                    g.add_edge(u, v, link=Link(u, v, bandwidth_bps, latency_s))
        return cls(g, devices)

    def links(self) -> list[Link]:
        """Every link direction, in a stable order."""
        return [data["link"] for _, _, data in self.graph.edges(data=True)]

    def _route(self, src: str, dst: str) -> tuple[Link, ...]:
        """The links of the fewest-hop path from ``src`` to ``dst``."""
        try:
            path = nx.shortest_path(self.graph, src, dst)
        except nx.NetworkXNoPath:
            raise UserError(f"network: no path from {src} to {dst}; add a link between them") from None
        return tuple(self.graph.edges[u, v]["link"] for u, v in zip(path, path[1:]))
