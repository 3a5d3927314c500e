"""Scenario files: the YAML schema, its validation, and the conversion of unit-suffixed keys to SI units.

A scenario is validated completely before any work starts. Every mistake becomes a one-line
:class:`~sim.errors.UserError` that names the field, e.g. ``devices[2].gflops: must be > 0``.

Keys in the file carry their unit (``bandwidth_mbps``, ``latency_ms``, ``gflops``); the properties named
``*_bps``, ``*_s`` and ``*_flops_per_s`` give the same quantity in SI units (1 Mbps = 1e6 bit/s).

Loading and error rendering live in :mod:`sim.config.load` and :mod:`sim.config.messages`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from sim.config.messages import format_validation_error
from sim.config.presets import apply_preset
from sim.errors import UserError
from sim.topology import SWITCH, check_connected, read_graphml, topology_edges

LABELLED_DATASETS = ("digits", "cifar10", "fashion-mnist")  # datasets with labels: training and accuracy need one
Strategy = Literal["contiguous", "round_robin", "random", "balanced", "aligned", "comm_aware"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
WireFormat = Literal["dense", "csr", "coo", "bitmap", "auto"]


class _Strict(BaseModel):
    """Base for every section: unknown keys are refused, values are not silently coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML ``true`` would otherwise pass as the number 1 (``gflops: true``)."""
        if isinstance(value, bool) and info.field_name is not None:
            types = _scalar_types(cls.model_fields[info.field_name].annotation)
            if bool not in types:
                wanted = "a number" if types & {int, float} else "text"
                raise ValueError(f"must be {wanted}, not {str(value).lower()}")
        return value


def _scalar_types(annotation: Any) -> set[Any]:
    """The plain types a field annotation admits (``float | None`` -> {float, NoneType})."""
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return {type(a) for a in args}
    return set().union(*map(_scalar_types, args)) if args else {annotation}


class ModelSpec(_Strict):
    """Which network to split. ``name`` is a zoo name or ``package.module:factory``."""

    name: str = Field(min_length=1)
    input_shape: tuple[int, ...] | None = Field(
        default=None, description="(channels, height, width) of one image; default: the zoo model's own"
    )
    checkpoint: Path | None = Field(default=None, description="state_dict saved by `dsim train`")
    num_classes: int = Field(default=10, gt=0)
    train_epochs: int = Field(
        default=0, ge=0, description="train (seeded) on the dataset's train split before pruning; 0: do not train"
    )
    lr: float = Field(default=1e-3, gt=0, description="Adam learning rate of train_epochs")
    width: float = Field(
        default=1.0,
        gt=0,
        le=4,
        description="channel multiplier of the CIFAR-style vgg/resnet models (1/8: 8-64) and of resnet50, "
        "mobilenetv2_imagenet, vgg16_imagenet",
    )

    @field_validator("input_shape")
    @classmethod
    def _shape_positive(cls, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if shape is not None and (len(shape) != 3 or min(shape) <= 0):
            raise ValueError("must be three positive integers [channels, height, width]")
        return shape


class InputsSpec(_Strict):
    """What enters the source device: ``frames`` batches of ``batch_size`` images, ``interval_ms`` apart."""

    dataset: Literal["digits", "cifar10", "fashion-mnist", "synthetic"] = "digits"
    path: Path | None = Field(
        default=None,
        description="cifar10: folder with data_batch_1..5 and test_batch; fashion-mnist: folder of the idx files "
        "(default /usr/share/datasets/fashion-mnist)",
    )
    batch_size: int = Field(default=1, gt=0)
    frames: int = Field(default=1, gt=0)
    interval_ms: float = Field(default=0.0, ge=0)
    fps: float | None = Field(default=None, gt=0, description="frames per second; replaces interval_ms")
    owners: list[str] | None = Field(
        default=None,
        min_length=1,
        description="device owning each channel of the image (e.g. one camera per channel); default: all on source",
    )

    @property
    def interval_s(self) -> float:
        """Time between frame arrivals at the source, in seconds (``1/fps`` when ``fps`` is given)."""
        return 1.0 / self.fps if self.fps is not None else self.interval_ms / 1e3


class DeviceSpec(_Strict):
    """One virtual device: its compute rate, a fixed per-layer overhead and an optional memory bandwidth
    (roofline, see :mod:`sim.engine.devices`). A ``preset`` board fills the fields the device does not give."""

    name: str = Field(min_length=1)
    preset: Literal["rpi4", "jetson-nano", "phone"] | None = Field(
        default=None, description="board whose figures fill unset fields (sim.config.presets.PRESETS)"
    )
    gflops: float | None = Field(default=None, gt=0, description="sustained compute rate, 1e9 FLOP/s")
    overhead_ms: float = Field(default=0.0, ge=0, description="fixed time added to every layer it computes")
    mem_bandwidth_gbps: float | None = Field(
        default=None, gt=0, description="memory bandwidth, 1e9 bytes/s; tasks take max(compute, memory) time"
    )
    calibrate: bool = Field(
        default=False,
        description="profile this scenario's layer shards on this machine (as dsim profile) and use the fit "
        "flops/rate + overhead for gflops and overhead_ms",
    )
    profile: Path | None = Field(
        default=None, description="profile JSON written by dsim profile: measured compute time per layer shard"
    )
    threads: int | None = Field(default=None, gt=0, description="torch threads its process uses (dsim profile)")
    host: str | None = Field(default=None, min_length=1, description="host (in hosts) whose cores it shares")
    send_overhead_us: float = Field(default=0.0, ge=0, description="software cost of sending one message")
    recv_overhead_us: float = Field(default=0.0, ge=0, description="software cost of receiving one message")

    @model_validator(mode="before")
    @classmethod
    def _fill_preset(cls, data: Any) -> Any:
        return apply_preset(data) if isinstance(data, dict) else data

    @property
    def flops_per_s(self) -> float:
        """Compute rate in FLOP/s. A ``calibrate: true`` device has none until the pipeline measures this
        machine (:func:`sim.experiment.pipeline.calibrated`) and fills in ``gflops``; a ``profile:`` device
        without ``gflops`` takes its profile's rate (:func:`sim.experiment.assemble.flops_per_s`)."""
        if self.gflops is None:
            raise UserError(
                f"devices: {self.name} has no gflops; profile it first (sim.experiment.pipeline.calibrated)"
            )
        return self.gflops * 1e9

    @property
    def mem_bandwidth_Bps(self) -> float | None:
        """Memory bandwidth in bytes/s, or None (compute-only timing)."""
        return None if self.mem_bandwidth_gbps is None else self.mem_bandwidth_gbps * 1e9

    @property
    def overhead_s(self) -> float:
        """Per-layer overhead in seconds."""
        return self.overhead_ms / 1e3


class HostSpec(_Strict):
    """A machine that several devices share (``devices[i].host``): their compute queues for its cores."""

    name: str = Field(min_length=1)
    cores: int = Field(gt=0, description="devices on it compute at most this many tasks at once")


class ProtocolSpec(_Strict):
    """How messages become packets on a link (see :class:`sim.engine.network.Protocol`)."""

    mtu_bytes: int = Field(gt=0, description="largest packet (IP header and payload), as ip link shows it")
    packet_header_bytes: int = Field(ge=14, description="header bytes per packet on the wire, 14 of Ethernet")
    message_header_bytes: int = Field(default=0, ge=0, description="application header per message")

    @model_validator(mode="after")
    def _room_for_payload(self) -> ProtocolSpec:
        if self.mtu_bytes + 14 - self.packet_header_bytes < 1:
            raise ValueError("packet_header_bytes: leaves no payload in a packet; it must be < mtu_bytes + 14")
        return self


class ShaperSpec(_Strict):
    """A token-bucket shaper at the link rate (Linux tc tbf): the first burst_bytes go at once."""

    burst_bytes: int = Field(gt=0, description="bucket size; it refills at the link rate")


ProtocolSetting = ProtocolSpec | Literal["tcp", "none"] | None


class LinkSpec(_Strict):
    """One link ``a``--``b``: for ``custom`` an edge, for other topologies an override of an existing one.
    Unset fields take the network's defaults; ``up`` is ``a->b``, ``down`` is ``b->a``."""

    a: str = Field(min_length=1)
    b: str = Field(min_length=1)
    bandwidth_mbps: float | None = Field(default=None, gt=0, description="rate of both directions")
    up_mbps: float | None = Field(default=None, gt=0, description="rate a->b; overrides bandwidth_mbps")
    down_mbps: float | None = Field(default=None, gt=0, description="rate b->a; overrides bandwidth_mbps")
    latency_ms: float | None = Field(default=None, ge=0)
    duplex: Literal["full", "half"] | None = None
    protocol: ProtocolSetting = Field(default=None, description="overrides network.protocol (none: no packets)")
    shaper: ShaperSpec | Literal["none"] | None = Field(default=None, description="overrides network.shaper")


class NetworkSpec(_Strict):
    """The links between devices (DESIGN section 3, "Topologies"). Every link direction is a FIFO queue;
    both directions of a half-duplex link share one; ``shared`` is one medium for every transmission."""

    topology: Literal["mesh", "star", "ring", "line", "custom", "shared"] = "mesh"
    bandwidth_mbps: float = Field(default=20.0, gt=0, description="rate of each link direction, 1e6 bit/s")
    latency_ms: float = Field(default=1.0, ge=0, description="propagation delay of each link")
    duplex: Literal["full", "half"] = Field(default="full", description="default duplex of every link")
    links: list[LinkSpec] = Field(default_factory=list, description="per-link overrides; the edges of custom")
    graphml: Path | None = Field(default=None, description="custom: GraphML file of edges (device names)")
    chunk_kb: float | None = Field(
        default=None, gt=0, description="split messages into chunks of this many kB (1e3 bytes) that pipeline"
    )
    access_overhead_ms: float = Field(default=0.0, ge=0, description="added to every transmission")
    multicast: bool = Field(default=False, description="shared: send a payload wanted by several devices once")
    protocol: ProtocolSetting = Field(
        default=None, description="packets on the wire: tcp (1500/66/0) or {mtu_bytes, packet_header_bytes, ...}"
    )
    shaper: ShaperSpec | None = Field(default=None, description="token bucket on every link direction")

    @property
    def chunk_bytes(self) -> int | None:
        """Chunk size in bytes (1 kB = 1e3 bytes, at least 1), or None: messages travel whole."""
        return None if self.chunk_kb is None else max(1, round(self.chunk_kb * 1e3))

    @property
    def access_overhead_s(self) -> float:
        """Time added to every transmission, in seconds."""
        return self.access_overhead_ms / 1e3

    @property
    def bandwidth_bps(self) -> float:
        """Link rate in bit/s."""
        return self.bandwidth_mbps * 1e6

    @property
    def latency_s(self) -> float:
        """Link propagation delay in seconds."""
        return self.latency_ms / 1e3


class PartitionSpec(_Strict):
    """How output channels of every conv and linear layer are assigned to devices: a strategy, or a file
    written by ``dsim partition``."""

    strategy: Strategy = "contiguous"
    seed: int | None = Field(default=None, ge=0, description="for random strategies; default: scenario seed")
    file: Path | None = Field(default=None, description="partition JSON; replaces the strategy")
    save_to: Path | None = Field(
        default=None, description="comm_aware: write the final (co-optimised) partition file here"
    )

    @model_validator(mode="after")
    def _one_source(self) -> PartitionSpec:
        if self.file is not None and "strategy" in self.model_fields_set:
            raise ValueError("give either strategy or file, not both")
        return self


class AdmmSpec(_Strict):
    """The ADMM schedule of ``prune.method: admm | admm_comm`` (see :mod:`sim.model.admm`)."""

    epochs: int = Field(default=15, ge=1, description="ADMM epochs (SGD); Z, U and rho are updated after each")
    rho: float = Field(default=1e-2, gt=0, description="initial ADMM penalty rho")
    rho_growth: float = Field(default=1.4, ge=1, description="rho is multiplied by this after each update")
    rho_max: float = Field(default=1.0, gt=0, description="cap of rho")
    retrain_epochs: int = Field(default=10, ge=0, description="masked retraining after the hard prune (Adam, prune.lr)")
    lr: float = Field(default=1e-2, gt=0, description="SGD learning rate of the ADMM epochs (cosine decay)")


class PruneSpec(_Strict):
    """Pruning applied before the workload is built (see :mod:`sim.model.prune`).

    Structured methods (``ln_structured``, ``random_structured``, ``comm_structured``) remove whole
    filters (dim 0), so the model really shrinks; unstructured ones zero single weights.
    """

    method: Literal[
        "none",
        "ln_structured",
        "random_structured",
        "comm_structured",
        "l1_unstructured",
        "random_unstructured",
        "global_unstructured",
        "kernel_magnitude",
        "block_diagonal",
        "admm",
        "admm_comm",
    ] = "none"
    granularity: Literal["kernel", "filter"] = Field(
        default="kernel", description="admm/admm_comm: keep k x k kernels W[f, c], or whole filters"
    )
    cost: Literal["hops", "seconds"] = Field(
        default="hops", description="admm_comm: device-pair cost from fewest-hop counts or per-value route time"
    )
    cost_matrix: list[list[float]] | None = Field(
        default=None, description="admm_comm: explicit device-by-device cost (scenario order); replaces cost"
    )
    admm: AdmmSpec = AdmmSpec()
    amount: float = Field(default=0.0, ge=0, lt=1, description="fraction of filters (structured) or weights")
    layers: dict[str, float] = Field(default_factory=dict, description="per-layer amounts, by layer name")
    ignored_layers: list[str] = Field(default_factory=list, description="layers left unpruned")
    norm: float = Field(default=2.0, gt=0, description="ln_structured: the n of the Ln filter norm")
    lambda_comm: float = Field(
        default=1.0,
        ge=0,
        description="comm_structured: weight of hop-weighted bytes saved against filter norm; admm_comm: weight "
        "of the cost-weighted L1 penalty relative to its value at the start",
    )
    max_layer_amount: float = Field(
        default=0.9, gt=0, lt=1, description="comm_structured: at most this fraction of any layer is removed"
    )
    finetune_epochs: int = Field(default=0, ge=0, description="retrain with the masks held fixed")
    lr: float = Field(default=1e-3, gt=0, description="Adam learning rate of finetune_epochs")

    @field_validator("layers")
    @classmethod
    def _amounts_in_range(cls, layers: dict[str, float]) -> dict[str, float]:
        for name, amount in layers.items():
            if not 0 <= amount < 1:
                raise ValueError(f"amount of '{name}' must be in [0, 1), got {amount}")
        return layers


class TransferSpec(_Strict):
    """How messages are packed on the wire (see DESIGN section 3, wire formats)."""

    format: WireFormat = "dense"
    dtype: Literal["float32", "float16", "bfloat16", "int8"] = "float32"
    index_bits: Literal[16, 32, 64] = 32
    exchange: Literal["inputs", "partial_sums", "auto"] = Field(
        default="inputs",
        description="inputs: send the input channels a device needs; partial_sums: send partial output sums "
        "to each filter's owner; auto: per layer, the scheme with fewer bytes (see sim.workload)",
    )
    channel_header: Literal["none", "index_list", "bitmap"] = Field(
        default="none",
        description="per-message channel identity; none: the plan is shipped once at deployment",
    )


class DeploySpec(_Strict):
    """The deployment phase: ``from`` ships every other device its weight shard before inference."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    from_: str = Field(alias="from", min_length=1, description="device that holds the whole model")
    format: WireFormat = "dense"


class Scenario(_Strict):
    """A complete, validated scenario (DESIGN section 4)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    seed: int = Field(default=0, ge=0)
    model: ModelSpec
    inputs: InputsSpec = InputsSpec()
    devices: list[DeviceSpec] = Field(min_length=1)
    network: NetworkSpec = NetworkSpec()
    source: str
    sink: str
    partition: PartitionSpec = PartitionSpec()
    prune: PruneSpec = PruneSpec()
    transfer: TransferSpec = TransferSpec()
    deploy: DeploySpec | None = Field(default=None, description="ship weight shards before inference")
    baseline: Literal["none", "single"] = Field(
        default="none", description="single: also run the whole model on the source device alone, for comparison"
    )
    hosts: list[HostSpec] = Field(default_factory=list, description="machines devices share (devices[i].host)")

    @model_validator(mode="after")
    def _hosts_and_packets(self) -> Scenario:
        hosts = [h.name for h in self.hosts]
        for i, name in enumerate(hosts):
            if name in hosts[:i]:
                raise ValueError(f"hosts[{i}].name: duplicate host name '{name}'")
        for i, d in enumerate(self.devices):
            if d.host is not None and d.host not in hosts:
                known = ", ".join(hosts) if hosts else "none (add a hosts: list)"
                raise ValueError(f"devices[{i}].host: unknown host '{d.host}'; hosts are {known}")
        net = self.network
        packets = net.protocol not in (None, "none") or any(link.protocol not in (None, "none") for link in net.links)
        if packets and net.chunk_kb is not None:
            raise ValueError("network.chunk_kb: a protocol already forwards packet by packet; remove chunk_kb")
        return self

    @model_validator(mode="after")
    def _device_rates(self) -> Scenario:
        for i, d in enumerate(self.devices):
            if d.calibrate and d.gflops is not None:
                raise ValueError(f"devices[{i}].gflops: give gflops or calibrate: true, not both")
            if d.calibrate and d.profile is not None:
                raise ValueError(f"devices[{i}].profile: give profile or calibrate: true, not both")
            if not d.calibrate and d.gflops is None and d.profile is None:
                raise ValueError(f"devices[{i}].gflops: required (or give a preset, a profile, or calibrate: true)")
        return self

    @model_validator(mode="after")
    def _inputs_and_network_consistent(self) -> Scenario:
        if self.inputs.fps is not None and self.inputs.interval_ms != 0:
            raise ValueError("inputs.fps: give either interval_ms or fps, not both")
        net, names = self.network, [d.name for d in self.devices]
        if net.multicast and net.topology != "shared":
            raise ValueError("network.multicast: only a shared medium multicasts; set topology: shared")
        if net.graphml is not None and net.topology != "custom":
            raise ValueError("network.graphml: only for topology: custom")
        nodes = names + ([SWITCH] if net.topology == "star" else [])
        if net.topology == "star" and SWITCH in names:
            raise ValueError(f"devices: a device may not be named '{SWITCH}' on a star (the switch node)")
        edges = {frozenset(e) for e in topology_edges(net.topology, names)}
        custom: list[tuple[str, str]] = []
        if net.graphml is not None:
            for a, b, attrs in read_graphml(str(net.graphml)):
                for end in (a, b):
                    if end not in names:
                        raise ValueError(f"network.graphml: unknown device '{end}'; devices are {', '.join(names)}")
                try:
                    LinkSpec(a=a, b=b, **attrs)
                except ValidationError as exc:
                    raise ValueError(f"network.graphml: edge {a}-{b}: {format_validation_error(exc)}") from None
                custom.append((a, b))
        for i, link in enumerate(net.links):
            for end in ("a", "b"):
                value = getattr(link, end)
                if value not in nodes:
                    raise ValueError(
                        f"network.links[{i}].{end}: unknown device '{value}'; nodes are {', '.join(nodes)}"
                    )
            if link.a == link.b:
                raise ValueError(f"network.links[{i}]: a and b must differ (got '{link.a}' twice)")
            if net.topology != "custom" and frozenset((link.a, link.b)) not in edges:
                raise ValueError(
                    f"network.links[{i}]: {link.a}-{link.b} is not a link of the {net.topology} "
                    f"topology; use topology: custom to choose the edges"
                )
            custom.append((link.a, link.b))
        if net.topology == "custom":
            check_connected(names, custom)
        return self

    @model_validator(mode="after")
    def _devices_consistent(self) -> Scenario:
        names = [d.name for d in self.devices]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"devices[{i}].name: duplicate device name '{name}'")
        for field in ("source", "sink"):
            value = getattr(self, field)
            if value not in names:
                raise ValueError(f"{field}: unknown device '{value}'; devices are {', '.join(names)}")
        if self.deploy is not None and self.deploy.from_ not in names:
            raise ValueError(f"deploy.from: unknown device '{self.deploy.from_}'; devices are {', '.join(names)}")
        for i, owner in enumerate(self.inputs.owners or ()):
            if owner not in names:
                raise ValueError(f"inputs.owners[{i}]: unknown device '{owner}'; devices are {', '.join(names)}")
        return self

    @model_validator(mode="after")
    def _pruning_and_training_consistent(self) -> Scenario:
        p, n = self.prune, len(self.devices)
        if p.cost_matrix is not None:
            m = p.cost_matrix
            if len(m) != n or any(len(row) != n for row in m):
                raise ValueError(f"prune.cost_matrix: must be {n} x {n} (one row and column per device)")
            if any(v < 0 or v != v or v == float("inf") for row in m for v in row):
                raise ValueError("prune.cost_matrix: entries must be finite and >= 0")
            if any(m[i][i] != 0 for i in range(n)):
                raise ValueError("prune.cost_matrix: the diagonal must be 0 (a device talks to itself for free)")
        admm_methods = ("admm", "admm_comm")
        if p.admm.rho_max < p.admm.rho:
            raise ValueError("prune.admm.rho_max: must be >= prune.admm.rho")
        if self.partition.strategy == "comm_aware" and self.partition.file is None and p.method not in admm_methods:
            raise ValueError("partition.strategy: comm_aware co-optimises with ADMM; set prune.method: admm_comm")
        if p.method in ("kernel_magnitude", "block_diagonal", *admm_methods) and p.layers:
            raise ValueError(f"prune.layers: {p.method} keeps the same fraction of every conv; use amount")
        if p.granularity == "filter" and p.method in ("kernel_magnitude", "block_diagonal"):
            raise ValueError(f"prune.granularity: {p.method} is kernel pruning; use ln_structured for filters")
        if p.method in admm_methods and self.inputs.dataset not in LABELLED_DATASETS:
            raise ValueError(f"prune.method: {p.method} trains; dataset '{self.inputs.dataset}' has no labels")
        if self.prune.layers and self.prune.method in ("comm_structured", "global_unstructured"):
            raise ValueError(
                f"prune.layers: {self.prune.method} ranks all layers together; give one amount "
                "(use ignored_layers to leave layers out)"
            )

        for field, epochs in (
            ("model.train_epochs", self.model.train_epochs),
            ("prune.finetune_epochs", self.prune.finetune_epochs),
        ):
            if epochs and self.inputs.dataset not in LABELLED_DATASETS:
                raise ValueError(
                    f"{field}: dataset '{self.inputs.dataset}' has no labels; "
                    f"use {' or '.join(LABELLED_DATASETS)}, or set it to 0"
                )
        if self.inputs.dataset == "cifar10" and self.inputs.path is None:
            raise ValueError("inputs.path: dataset cifar10 needs the folder holding data_batch_1..5 and test_batch")
        return self

    @property
    def device_names(self) -> list[str]:
        """Device names in scenario order (the order every table and tie-break uses)."""
        return [d.name for d in self.devices]

    def resolved(self) -> dict[str, Any]:
        """The scenario with every default filled in, as plain JSON-ready data."""
        return json.loads(self.model_dump_json())
