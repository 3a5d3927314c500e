"""Topologies as plain edge lists, shared by scenario validation and the engine's network (no SimPy, no torch).

Example::

    >>> topology_edges("line", ["a", "b", "c"])
    [('a', 'b'), ('b', 'c')]
    >>> topology_edges("star", ["a", "b"])
    [('a', 'switch'), ('b', 'switch')]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

SWITCH = "switch"  # the star topology's switch node
MEDIUM = "medium"  # the queue of the shared wireless medium


def topology_edges(topology: str, devices: Sequence[str]) -> list[tuple[str, str]]:
    """The undirected edges of a built-in topology (``custom`` has none of its own), in a stable order.

    ``topology`` is one of :data:`sim.config.vocab.TOPOLOGIES` (the scenario schema refuses any other)."""
    n = len(devices)
    if topology in ("mesh", "shared"):
        return [(devices[i], devices[j]) for i in range(n) for j in range(i + 1, n)]
    if topology == "star":
        return [(d, SWITCH) for d in devices]
    if topology == "line" or (topology == "ring" and n <= 2):
        return [(devices[i], devices[i + 1]) for i in range(n - 1)]
    if topology == "ring":
        return [(devices[i], devices[(i + 1) % n]) for i in range(n)]
    return []  # custom: the scenario lists the edges


def parse_graphml(text: str, where: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The edges of a GraphML document with their attributes (``bandwidth_mbps``, ``latency_ms``,
    ``up_mbps``, ``down_mbps``, ``duplex``), in document order. Raises ``ValueError`` naming
    ``network.graphml`` and ``where`` (the file)."""
    try:
        import networkx as nx  # networkx: imported when a GraphML file is read, keeping dsim schema instant

        g = nx.parse_graphml(text)
    except Exception as exc:  # networkx raises NetworkXError / ParseError (and more) for malformed documents
        raise ValueError(f"network.graphml: {where} is not a readable GraphML file ({type(exc).__name__})") from None
    return [(str(u), str(v), dict(data)) for u, v, data in g.edges(data=True)]


def check_connected(nodes: Sequence[str], edges: Iterable[tuple[str, str]], field: str = "network") -> None:
    """Raise ``ValueError`` naming a pair of ``nodes`` with no path between them over ``edges``."""
    neighbours: dict[str, list[str]] = {n: [] for n in nodes}  # plain BFS: no networkx at scenario load
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    if not neighbours:
        return
    start = next(iter(neighbours))
    seen, frontier = {start}, [start]
    while frontier:
        u = frontier.pop()
        for v in neighbours[u]:
            if v not in seen:
                seen.add(v)
                frontier.append(v)
    components = [seen] if len(seen) == len(neighbours) else [seen, set(neighbours) - seen]
    if len(components) > 1:
        first = next(n for n in nodes if n in components[0])
        other = next(n for n in nodes if n not in components[0])
        raise ValueError(
            f"{field}: no path between {first} and {other}; add a link between their groups "
            f"in network.links or use a connected topology"
        )
