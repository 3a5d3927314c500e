"""A validated scenario converted once into frozen records in SI units: what the rest of the code reads.

:func:`build_setup` runs when a scenario is loaded (:func:`sim.config.load.parse_scenario`): it reads the
GraphML file of a ``custom`` network once (bounded, see :func:`sim.fileio.read_limited`), checks its edges
and the network's connectivity, resolves the scenario's relative paths against the scenario file's folder
and converts every unit-suffixed key (``bandwidth_mbps``, ``latency_ms``, ``gflops``, ``chunk_kB``, ...) to
SI units (bit/s, s, FLOP/s, bytes), as the records of :mod:`sim.config.records`. Nothing here imports torch
or SimPy.

Example::

    >>> from sim.config.load import parse_scenario
    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"}, "source": "a", "sink": "a",
    ...                      "devices": [{"name": "a", "gflops": 2, "overhead_ms": 0.5}],
    ...                      "network": {"bandwidth_mbps": 20, "chunk_kB": 1.5}})
    >>> sc.setup.network.bandwidth_bps, sc.setup.network.chunk_bytes
    (20000000.0, 1500)
    >>> sc.setup.devices[0]
    DeviceSetup(name='a', flops_per_s=2000000000.0, overhead_s=0.0005, mem_bandwidth_Bps=None)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from sim.config.messages import format_validation_error
from sim.config.records import LinkSetup, NetworkSetup, Paths, Setup, device_setups, interval_s
from sim.config.schema import LinkSpec, NetworkSpec, Scenario
from sim.fileio import read_limited
from sim.topology import check_connected, parse_graphml

MAX_GRAPHML_BYTES = 16 * 2**20  # a GraphML file of a few thousand edges is far below this


def resolve(path: Path | None, base_dir: Path | None) -> Path | None:
    """``path`` as given when absolute (or when there is no ``base_dir``), else under ``base_dir``.

    >>> str(resolve(Path("p.json"), Path("/s"))), str(resolve(Path("/x/p.json"), Path("/s")))
    ('/s/p.json', '/x/p.json')
    """
    if path is None or base_dir is None or path.is_absolute():
        return path
    return base_dir / path


def link_setup(net: NetworkSpec, link: LinkSpec) -> LinkSetup:
    """One link entry in SI units, the network's defaults filled in."""
    both = (link.bandwidth_mbps or net.bandwidth_mbps) * 1e6
    up = link.up_mbps * 1e6 if link.up_mbps is not None else both
    down = link.down_mbps * 1e6 if link.down_mbps is not None else both
    latency = net.latency_ms / 1e3 if link.latency_ms is None else link.latency_ms / 1e3
    protocol = net.protocol if link.protocol is None else link.protocol
    shaper = net.shaper if link.shaper is None else (None if link.shaper == "none" else link.shaper)
    loss = net.loss if link.loss is None else (None if link.loss == "none" else link.loss)
    jitter = net.jitter_ms if link.jitter_ms is None else (None if link.jitter_ms == "none" else link.jitter_ms)
    return LinkSetup(link.a, link.b, up, down, latency, link.duplex or net.duplex, protocol, shaper, loss, jitter)


def graphml_links(path: Path, names: list[str]) -> list[LinkSpec]:
    """The edges of a GraphML file as validated link entries; raises ``ValueError`` naming
    ``network.graphml`` (and the edge) on any problem."""
    text = read_limited(path, MAX_GRAPHML_BYTES, "network.graphml")
    links: list[LinkSpec] = []
    for a, b, attrs in parse_graphml(text, str(path)):
        for end in (a, b):
            if end not in names:
                raise ValueError(f"network.graphml: unknown device {end!r}; devices are {', '.join(names)}")
        edge = f"network.graphml: edge {a}-{b}"
        if a == b:
            raise ValueError(f"{edge}: a link joins two different devices")
        reserved = sorted(set(attrs) & {"a", "b"})
        if reserved:
            raise ValueError(f"{edge}: attribute '{reserved[0]}' is not a link field (the ends come from the edge)")
        try:
            links.append(LinkSpec.model_validate({"a": a, "b": b, **attrs}))
        except ValidationError as exc:
            raise ValueError(f"{edge}: {format_validation_error(exc)}") from None
    return links


def network_setup(scenario: Scenario, graphml: Path | None) -> NetworkSetup:
    """The scenario's network in SI units, reading ``graphml`` (resolved) once; checks that a custom
    network connects every device. Raises ``ValueError`` naming the field."""
    net, names = scenario.network, scenario.device_names
    from_file = [] if graphml is None else graphml_links(graphml, names)
    overrides: dict[tuple[str, str], LinkSetup] = {}
    for link in [*net.links, *from_file]:  # network.links wins over a GraphML edge with the same ends
        overrides.setdefault((link.a, link.b), link_setup(net, link))
    edges: list[tuple[str, str]] = []
    if net.topology == "custom":
        edges = list(dict.fromkeys([(x.a, x.b) for x in from_file] + [(x.a, x.b) for x in net.links]))
        check_connected(names, edges)
    return NetworkSetup(
        topology=net.topology,
        bandwidth_bps=net.bandwidth_mbps * 1e6,
        latency_s=net.latency_ms / 1e3,
        duplex=net.duplex,
        links=tuple(overrides.values()),
        edges=tuple(edges),
        chunk_bytes=None if net.chunk_kB is None else max(1, round(net.chunk_kB * 1e3)),
        access_overhead_s=net.access_overhead_ms / 1e3,
        multicast=net.multicast,
        interleave=net.interleave,
        protocol=net.protocol,
        shaper=net.shaper,
        loss=net.loss,
        jitter=net.jitter_ms,
        rto_s=net.rto_ms / 1e3,
    )


def build_setup(scenario: Scenario, base_dir: Path | None = None) -> Setup:
    """The scenario's :class:`Setup`; relative paths resolve against ``base_dir`` (the scenario file's
    folder; None: the current folder). Raises ``ValueError`` naming the field."""
    paths = Paths(
        checkpoint=resolve(scenario.model.checkpoint, base_dir),
        dataset=resolve(scenario.inputs.path, base_dir),
        graphml=resolve(scenario.network.graphml, base_dir),
        partition=resolve(scenario.partition.file, base_dir),
        profiles=tuple((d.name, resolve(d.profile, base_dir)) for d in scenario.devices if d.profile is not None),
        save_to=resolve(scenario.partition.save_to, base_dir),
        runtime_profile=resolve(scenario.profile, base_dir),
    )
    inputs = scenario.inputs
    return Setup(
        network=network_setup(scenario, paths.graphml),
        devices=device_setups(scenario.devices),
        interval_s=interval_s(inputs),
        paths=paths,
        base_dir=base_dir,
    )
