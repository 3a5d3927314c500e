"""Scenario files: the YAML schema, its validation, and the conversion of unit-suffixed keys to SI units.

A scenario is validated completely before any work starts. Every mistake becomes a one-line
:class:`~sim.errors.UserError` that names the field, e.g. ``devices[2].gflops: must be > 0``.

Keys in the file carry their unit (``bandwidth_mbps`` megabits/s, ``mem_bandwidth_GBps`` gigabytes/s,
``latency_ms``, ``chunk_kB`` kilobytes, ``gflops``). Every physical quantity is a finite number in a stated,
physically sensible range (:data:`LIMITS`); the validators read no files and measure nothing. The conversion
to SI units happens once, on load, into the frozen records of :mod:`sim.config.setup`.

Renamed keys (:data:`RENAMED`) are still accepted under their old name, with a one-line note on stderr.

Loading and error rendering live in :mod:`sim.config.load` and :mod:`sim.config.messages`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sim.config.presets import apply_power_preset, apply_preset
from sim.config.records import Setup, device_setups, interval_s
from sim.config.vocab import (
    LABELLED_DATASETS,
    POWER_PRESETS,
    SPLIT_STRATEGIES,
    STRATEGIES,
    Baseline,
    ChannelHeader,
    Dataset,
    Dtype,
    Duplex,
    Exchange,
    IndexBits,
    Preset,
    PruneMethod,
    Strategy,
    Topology,
    WireFormat,
)
from sim.topology import SWITCH, topology_edges

__all__ = ["LABELLED_DATASETS", "STRATEGIES", "Scenario"]

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds both take it; larger ones overflowed later, in the runner
MAX_NAME = 200  # characters of a device, layer or model name


class DeprecatedKey(UserWarning):
    """An old key name was used; the message is one line saying which key replaces it."""


def _one_line(text: str) -> str:
    if not text.isprintable():
        raise ValueError("must not contain control characters (newlines, tabs)")
    if len(text) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters")
    return text


Name = Annotated[str, Field(min_length=1), AfterValidator(_one_line)]
"""A device, layer or model name: printable characters on one line (error messages quote it)."""


class _Strict(BaseModel):
    """Base for every section: unknown keys are refused, values are not silently coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    renamed_keys: ClassVar[dict[str, str]] = {}  # old key -> new key, same number (see RENAMED)

    @model_validator(mode="before")
    @classmethod
    def _old_key_names(cls, data: Any) -> Any:
        return _renamed(cls.renamed_keys, data)

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


def _renamed(renamed_keys: dict[str, str], data: Any) -> Any:
    """``data`` with each old key of ``renamed_keys`` written under its new name, with a
    :class:`DeprecatedKey` warning; both names at once are refused."""
    if not isinstance(data, dict):
        return data
    for old, new in renamed_keys.items():
        if old in data:
            if new in data:
                raise ValueError(f"{old}: give {new} (its new name) only, not both")
            data = {(new if k == old else k): v for k, v in data.items()}
            warnings.warn(f"{old} is deprecated; write {new} (same number)", DeprecatedKey, stacklevel=2)
    return data


def _scalar_types(annotation: Any) -> set[Any]:
    """The plain types a field annotation admits (``float | None`` -> {float, NoneType})."""
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return {type(a) for a in args}
    return set().union(*map(_scalar_types, args)) if args else {annotation}


MAX_CHANNELS = 256  # channels of one input image
MAX_EPOCHS = 1000  # passes over a train split (model.train_epochs, prune.*epochs, dsim train --epochs)
MAX_SIDE = 1024  # pixels of one side of an input image


class ModelSpec(_Strict):
    """Which network to split. ``name`` is a zoo name or ``package.module:factory``."""

    name: Name
    input_shape: tuple[int, ...] | None = Field(
        default=None, description="(channels, height, width) of one image; default: the zoo model's own"
    )
    checkpoint: Path | None = Field(
        default=None, description="state_dict saved by `dsim train` (relative: to the scenario's folder)"
    )
    num_classes: int = Field(default=10, gt=0, le=100_000)
    train_epochs: int = Field(
        default=0,
        ge=0,
        le=MAX_EPOCHS,
        description="train (seeded) on the dataset's train split before pruning; 0: do not train",
    )
    lr: float = Field(default=1e-3, gt=0, le=10, description="Adam learning rate of train_epochs")
    width: float = Field(
        default=1.0,
        ge=1 / 64,
        le=4,
        description="channel multiplier of the CIFAR-style vgg/resnet models (1/8: 8-64) and of resnet50, "
        "mobilenetv2_imagenet, vgg16_imagenet",
    )

    @field_validator("input_shape")
    @classmethod
    def _shape_positive(cls, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if shape is not None and (len(shape) != 3 or min(shape) <= 0):
            raise ValueError("must be three positive integers [channels, height, width]")
        if shape is not None and (shape[0] > MAX_CHANNELS or max(shape[1:]) > MAX_SIDE):
            raise ValueError(f"at most {MAX_CHANNELS} channels and {MAX_SIDE} pixels a side (got {list(shape)})")
        return shape


class InputsSpec(_Strict):
    """What enters the source device: ``frames`` batches of ``batch_size`` images, ``interval_ms`` apart."""

    dataset: Dataset = "digits"
    path: Path | None = Field(
        default=None,
        description="cifar10: folder with data_batch_1..5 and test_batch; fashion-mnist: folder of the idx files "
        "(default /usr/share/datasets/fashion-mnist); relative: to the scenario's folder",
    )
    batch_size: int = Field(default=1, gt=0, le=1024)
    frames: int = Field(default=1, gt=0, le=100_000)
    interval_ms: float = Field(default=0.0, ge=0, le=3.6e6, description="time between frames (at most an hour)")
    fps: float | None = Field(default=None, ge=1e-3, le=1e6, description="frames per second; replaces interval_ms")
    deadline_ms: float | None = Field(
        default=None, gt=0, le=3.6e6, description="frame latency budget; summary.json gives the share that miss it"
    )
    owners: list[Name] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CHANNELS,
        description="device owning each channel of the image (e.g. one camera per channel); default: all on source",
    )


class PowerSpec(_Strict):
    """A device's power (watts) and radio energy (nanojoules per bit on the wire), for the energy of a run
    (:mod:`sim.analysis.energy`); a preset name (``wifi-pi4``, ``lte-phone``, ``ethernet-jetson``) stands
    for its figures (:data:`sim.config.presets.POWER_PRESETS`)."""

    idle_w: float = Field(ge=0, le=1e6, description="power while not computing, watts")
    busy_w: float = Field(ge=0, le=1e6, description="power while computing, watts")
    tx_nj_per_bit: float = Field(default=0.0, ge=0, le=1e9, description="radio energy per bit sent, nJ")
    rx_nj_per_bit: float = Field(default=0.0, ge=0, le=1e9, description="radio energy per bit received, nJ")
    tail_s: float = Field(
        default=0.0, ge=0, le=3600, description="time the radio stays in a high-power state after a transfer"
    )
    tail_w: float = Field(default=0.0, ge=0, le=1e6, description="radio power during the tail, watts")


class DeviceSpec(_Strict):
    """One virtual device: its compute rate, a fixed per-layer overhead and an optional memory bandwidth
    (roofline, see :mod:`sim.engine.devices`). A ``preset`` board fills the fields the device does not give."""

    renamed_keys: ClassVar[dict[str, str]] = {"mem_bandwidth_gbps": "mem_bandwidth_GBps"}

    name: Name
    preset: Preset | None = Field(
        default=None, description="board whose figures fill unset fields (sim.config.presets.PRESETS)"
    )
    gflops: float | None = Field(
        default=None, ge=1e-6, le=1e9, description="sustained compute rate, 1e9 FLOP/s (1e-6 to 1e9)"
    )
    overhead_ms: float = Field(
        default=0.0, ge=0, le=3.6e6, description="fixed time added to every layer it computes (at most an hour)"
    )
    mem_bandwidth_GBps: float | None = Field(
        default=None,
        ge=1e-6,
        le=1e6,
        description="memory bandwidth, gigaBYTES/s (1e9 bytes/s); tasks take max(compute, memory) time",
    )
    calibrate: bool = Field(
        default=False,
        description="profile this scenario's layer shards on this machine (as dsim profile) and use the fit "
        "flops/rate + overhead for gflops and overhead_ms",
    )
    profile: Path | None = Field(
        default=None, description="profile JSON written by dsim profile: measured compute time per layer shard"
    )
    threads: int | None = Field(
        default=None, ge=1, le=1024, description="torch threads its process uses (dsim profile)"
    )
    host: str | None = Field(default=None, min_length=1, description="host (in hosts) whose cores it shares")
    send_overhead_us: float = Field(
        default=0.0, ge=0, le=3.6e9, description="software cost of sending one message (at most an hour)"
    )
    recv_overhead_us: float = Field(
        default=0.0, ge=0, le=3.6e9, description="software cost of receiving one message (at most an hour)"
    )
    power: PowerSpec | None = Field(
        default=None,
        description="power and radio energy: {idle_w, busy_w, tx_nj_per_bit, rx_nj_per_bit, tail_s, tail_w} or "
        f"a preset ({', '.join(POWER_PRESETS)}); the run then reports joules",
    )
    memory_mb: float | None = Field(
        default=None,
        gt=0,
        le=1e9,
        description="memory for weights and activations (MB = 1e6 bytes); dsim optimize rejects splits needing more",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_preset(cls, data: Any) -> Any:
        return apply_preset(_renamed(cls.renamed_keys, data)) if isinstance(data, dict) else data

    @field_validator("power", mode="before")
    @classmethod
    def _power_preset(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in POWER_PRESETS:
            raise ValueError(
                f"unknown power preset '{value}'; choose one of {', '.join(POWER_PRESETS)} or give the figures"
            )
        return apply_power_preset(value)


MIN_MBPS, MAX_MBPS = 1e-6, 1e9  # 1 bit/s to 1 Pbit/s
MAX_LATENCY_MS = 3.6e6  # an hour


class HostSpec(_Strict):
    """A machine that several devices share (``devices[i].host``): their compute queues for its cores."""

    name: str = Field(min_length=1)
    cores: int = Field(ge=1, le=4096, description="devices on it compute at most this many tasks at once")
    sharing: Literal["fifo", "processor"] | None = Field(
        default=None,
        description="fifo: a task waits for a free core; processor: all run at once, each at cores/tasks of a "
        "core (as an OS time-slices processes); default: fifo",
    )


class ProtocolSpec(_Strict):
    """How messages become packets on a link (see :class:`sim.engine.network.Protocol`)."""

    mtu_bytes: int = Field(
        ge=68, le=65_536, description="largest packet (IP header and payload), as ip link shows it (IPv4: 68 to 65536)"
    )
    packet_header_bytes: int = Field(
        ge=14, le=65_536, description="header bytes per packet on the wire, 14 of Ethernet"
    )
    message_header_bytes: int = Field(default=0, ge=0, le=2**20, description="application header per message")

    @model_validator(mode="after")
    def _room_for_payload(self) -> ProtocolSpec:
        if self.mtu_bytes + 14 - self.packet_header_bytes < 1:
            raise ValueError("packet_header_bytes: leaves no payload in a packet; it must be < mtu_bytes + 14")
        return self


class ShaperSpec(_Strict):
    """A token-bucket shaper at the link rate (Linux tc tbf): the first burst_bytes go at once."""

    burst_bytes: int = Field(ge=1, le=10**12, description="bucket size; it refills at the link rate (at most 1 TB)")


ProtocolSetting = ProtocolSpec | Literal["tcp", "none"] | None


def _fields_of_kind(
    spec: BaseModel, what: str, fields: Mapping[str, tuple[str, ...]], kind: str, required: tuple[str, ...]
) -> None:
    """Refuse a field of another kind (``fields``: kind -> its fields) and a missing ``required`` one."""
    for name in (f for other, names in fields.items() if other != kind for f in names):
        if getattr(spec, name) is not None and name not in fields[kind]:
            raise ValueError(f"{name}: not a field of {what} (it takes {', '.join(fields[kind])})")
    for name in required:
        if getattr(spec, name) is None:
            raise ValueError(f"{name}: required by {what}")


MAX_LOSS = 0.9  # beyond 90 % loss a link carries next to nothing (and backed-off timeouts run to minutes)
_LOSS_FIELDS: dict[str, tuple[str, ...]] = {
    "bernoulli": ("p",),
    "gilbert_elliott": ("p_good_bad", "p_bad_good", "loss_good", "loss_bad"),
}


class LossSpec(_Strict):
    """Which transmissions a link loses (see :mod:`sim.engine.loss`): ``bernoulli`` loses each with
    probability ``p``; ``gilbert_elliott`` is a good/bad Markov channel stepped per transmission."""

    model: Literal["bernoulli", "gilbert_elliott"] = "bernoulli"
    p: float | None = Field(default=None, ge=0, le=MAX_LOSS, description="bernoulli: loss probability")
    p_good_bad: float | None = Field(default=None, gt=0, le=1, description="gilbert_elliott: P(good -> bad)")
    p_bad_good: float | None = Field(default=None, gt=0, le=1, description="gilbert_elliott: P(bad -> good)")
    loss_good: float | None = Field(
        default=None, ge=0, le=MAX_LOSS, description="gilbert_elliott: loss probability in the good state (default 0)"
    )
    loss_bad: float | None = Field(
        default=None, ge=0, le=1, description="gilbert_elliott: loss probability in the bad state (default 1)"
    )

    @model_validator(mode="after")
    def _fields_of_its_model(self) -> LossSpec:
        required = ("p",) if self.model == "bernoulli" else ("p_good_bad", "p_bad_good")
        _fields_of_kind(self, f"model {self.model}", _LOSS_FIELDS, self.model, required)
        return self


_JITTER_FIELDS: dict[str, tuple[str, ...]] = {
    "normal": ("std", "mean"),
    "uniform": ("low", "high"),
    "pareto": ("scale", "shape"),
}


class JitterSpec(_Strict):
    """Extra delay of every transmission on a link, in milliseconds, added to its latency (a total below 0
    counts as 0): ``normal`` (``mean`` default 0, ``std``), ``uniform`` (``low`` to ``high``) or ``pareto``
    (Lomax from 0: ``scale``, ``shape``); ``correlation`` links consecutive draws (see :mod:`sim.engine.loss`)."""

    distribution: Literal["normal", "uniform", "pareto"] = "normal"
    mean: float | None = Field(default=None, ge=-MAX_LATENCY_MS, le=MAX_LATENCY_MS, description="normal: mean, ms")
    std: float | None = Field(default=None, gt=0, le=MAX_LATENCY_MS, description="normal: standard deviation, ms")
    low: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS, description="uniform: smallest delay, ms")
    high: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS, description="uniform: largest delay, ms")
    scale: float | None = Field(default=None, gt=0, le=MAX_LATENCY_MS, description="pareto: scale, ms")
    shape: float | None = Field(
        default=None, gt=1, le=100, description="pareto: tail index (above 1: a finite mean scale/(shape-1))"
    )
    correlation: float = Field(default=0.0, ge=0, lt=1, description="lag-1 correlation of consecutive draws")

    @model_validator(mode="after")
    def _fields_of_its_distribution(self) -> JitterSpec:
        kind = self.distribution
        required = _JITTER_FIELDS[kind][:1] if kind == "normal" else _JITTER_FIELDS[kind]
        _fields_of_kind(self, f"distribution {kind}", _JITTER_FIELDS, kind, required)
        if self.distribution == "uniform" and self.low > self.high:  # type: ignore[operator]
            raise ValueError(f"low: {self.low} is above high ({self.high})")
        return self


class LinkSpec(_Strict):
    """One link ``a``--``b``: for ``custom`` an edge, for other topologies an override of an existing one.
    Unset fields take the network's defaults; ``up`` is ``a->b``, ``down`` is ``b->a``."""

    a: Name
    b: Name
    bandwidth_mbps: float | None = Field(
        default=None, ge=MIN_MBPS, le=MAX_MBPS, description="rate of both directions, megaBITS/s"
    )
    up_mbps: float | None = Field(
        default=None, ge=MIN_MBPS, le=MAX_MBPS, description="rate a->b; overrides bandwidth_mbps"
    )
    down_mbps: float | None = Field(
        default=None, ge=MIN_MBPS, le=MAX_MBPS, description="rate b->a; overrides bandwidth_mbps"
    )
    latency_ms: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS)
    duplex: Duplex | None = None
    protocol: ProtocolSetting = Field(default=None, description="overrides network.protocol (none: no packets)")
    shaper: ShaperSpec | Literal["none"] | None = Field(default=None, description="overrides network.shaper")
    loss: LossSpec | Literal["none"] | None = Field(default=None, description="overrides network.loss")
    jitter_ms: JitterSpec | Literal["none"] | None = Field(default=None, description="overrides network.jitter_ms")


class NetworkSpec(_Strict):
    """The links between devices (docs/design.md §3.8). Every link direction is a FIFO queue;
    both directions of a half-duplex link share one; ``shared`` is one medium for every transmission."""

    renamed_keys: ClassVar[dict[str, str]] = {"chunk_kb": "chunk_kB"}

    topology: Topology = "mesh"
    bandwidth_mbps: float = Field(
        default=20.0, ge=MIN_MBPS, le=MAX_MBPS, description="rate of each link direction, megaBITS/s (1e6 bit/s)"
    )
    latency_ms: float = Field(default=1.0, ge=0, le=MAX_LATENCY_MS, description="propagation delay of each link")
    duplex: Duplex = Field(default="full", description="default duplex of every link")
    links: list[LinkSpec] = Field(
        default_factory=list, max_length=100_000, description="per-link overrides; the edges of custom"
    )
    graphml: Path | None = Field(
        default=None, description="custom: GraphML file of edges (device names; relative: to the scenario's folder)"
    )
    chunk_kB: float | None = Field(
        default=None,
        ge=0.064,
        le=1e9,
        description="split messages into chunks of this many kiloBYTES (1e3 bytes; at least 0.064, the 64 bytes "
        "of the smallest Ethernet frame) that pipeline",
    )
    access_overhead_ms: float = Field(default=0.0, ge=0, le=MAX_LATENCY_MS, description="added to every transmission")
    multicast: bool = Field(default=False, description="shared: send a payload wanted by several devices once")
    protocol: ProtocolSetting = Field(
        default=None, description="packets on the wire: tcp (1500/66/0) or {mtu_bytes, packet_header_bytes, ...}"
    )
    shaper: ShaperSpec | None = Field(default=None, description="token bucket on every link direction")
    interleave: bool = Field(
        default=False,
        description="a busy link serves the packets (chunks) of different connections (device pairs) in turn, "
        "as concurrent TCP connections through one interface can; messages to one peer keep their order",
    )
    loss: LossSpec | None = Field(
        default=None, description="packet loss on every link direction (needs protocol, except on shared)"
    )
    jitter_ms: JitterSpec | None = Field(default=None, description="extra delay of every transmission, ms")
    rto_ms: float = Field(
        default=200.0, ge=1, le=120_000, description="TCP retransmission timeout of a loss not fast-retransmitted"
    )


class PartitionSpec(_Strict):
    """How output channels of every conv and linear layer are assigned to devices: a strategy, or a file
    written by ``dsim partition``."""

    strategy: Strategy = "contiguous"
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="for random strategies; default: scenario seed"
    )
    file: Path | None = Field(
        default=None, description="partition JSON; replaces the strategy (relative: to the scenario's folder)"
    )
    save_to: Path | None = Field(
        default=None, description="comm_aware: write the final (co-optimised) partition file here"
    )
    fused: bool = Field(default=False, description="spatial: fuse each run of row-split convs (fused tiles, FTP)")
    tiles: tuple[int, int] | None = Field(
        default=None, description="spatial: [rows, columns] of a tile grid instead of row bands"
    )

    @model_validator(mode="after")
    def _one_source(self) -> PartitionSpec:
        if self.file is not None and "strategy" in self.model_fields_set:
            raise ValueError("give either strategy or file, not both")
        if self.strategy != "spatial" and (self.fused or self.tiles is not None):
            raise ValueError("fused and tiles are settings of strategy: spatial")
        if self.tiles is not None and min(self.tiles) < 1:
            raise ValueError(f"tiles: both counts must be >= 1 (got {list(self.tiles)})")
        return self


class AdmmSpec(_Strict):
    """The ADMM schedule of ``prune.method: admm | admm_comm`` (see :mod:`sim.prune.admm`)."""

    epochs: int = Field(
        default=15, ge=1, le=MAX_EPOCHS, description="ADMM epochs (SGD); Z, U and rho are updated after each"
    )
    rho: float = Field(default=1e-2, ge=1e-9, le=1e6, description="initial ADMM penalty rho")
    rho_growth: float = Field(default=1.4, ge=1, le=100, description="rho is multiplied by this after each update")
    rho_max: float = Field(default=1.0, ge=1e-9, le=1e6, description="cap of rho")
    retrain_epochs: int = Field(
        default=10, ge=0, le=MAX_EPOCHS, description="masked retraining after the hard prune (Adam, prune.lr)"
    )
    lr: float = Field(default=1e-2, gt=0, le=10, description="SGD learning rate of the ADMM epochs (cosine decay)")


MAX_COST = 1e9  # an entry of prune.cost_matrix (hops, seconds or any relative unit)


class PruneSpec(_Strict):
    """Pruning applied before the workload is built (see :mod:`sim.prune.structured`).

    Structured methods (``ln_structured``, ``random_structured``, ``comm_structured``) remove whole
    filters (dim 0), so the model really shrinks; unstructured ones zero single weights.
    """

    method: PruneMethod = "none"
    granularity: Literal["kernel", "filter"] = Field(
        default="kernel", description="admm/admm_comm: keep k x k kernels W[f, c], or whole filters"
    )
    cost: Literal["hops", "seconds"] = Field(
        default="hops", description="admm_comm: device-pair cost from fewest-hop counts or per-value route time"
    )
    cost_matrix: list[list[Annotated[float, Field(ge=0, le=MAX_COST)]]] | None = Field(
        default=None,
        max_length=1000,
        description="admm_comm: explicit device-by-device cost (scenario order); replaces cost",
    )
    admm: AdmmSpec = AdmmSpec()
    amount: float = Field(default=0.0, ge=0, lt=1, description="fraction of filters (structured) or weights")
    layers: dict[Name, float] = Field(default_factory=dict, description="per-layer amounts, by layer name")
    ignored_layers: list[Name] = Field(default_factory=list, description="layers left unpruned")
    norm: float = Field(default=2.0, gt=0, le=1e3, description="ln_structured: the n of the Ln filter norm")
    lambda_comm: float = Field(
        default=1.0,
        ge=0,
        le=1e6,
        description="comm_structured: weight of hop-weighted bytes saved against filter norm; admm_comm: weight "
        "of the cost-weighted L1 penalty relative to its value at the start",
    )
    max_layer_amount: float = Field(
        default=0.9, gt=0, lt=1, description="comm_structured: at most this fraction of any layer is removed"
    )
    finetune_epochs: int = Field(default=0, ge=0, le=MAX_EPOCHS, description="retrain with the masks held fixed")
    lr: float = Field(default=1e-3, gt=0, le=10, description="Adam learning rate of finetune_epochs")

    @field_validator("layers")
    @classmethod
    def _amounts_in_range(cls, layers: dict[str, float]) -> dict[str, float]:
        for name, amount in layers.items():
            if not 0 <= amount < 1:  # NaN fails this too
                raise ValueError(f"amount of '{name}' must be in [0, 1), got {amount}")
        return layers


class TransferSpec(_Strict):
    """How messages are packed on the wire (docs/design.md §3.5)."""

    format: WireFormat = "dense"
    dtype: Dtype = "float32"
    index_bits: IndexBits = 32
    exchange: Exchange = Field(
        default="inputs",
        description="inputs: send the input channels a device needs; partial_sums: send partial output sums "
        "to each filter's owner; auto: per layer, the scheme with fewer bytes (see sim.workload)",
    )
    channel_header: ChannelHeader = Field(
        default="none",
        description="per-message channel identity; none: the plan is shipped once at deployment",
    )


class DeploySpec(_Strict):
    """The deployment phase: ``from`` ships every other device its weight shard before inference."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True, serialize_by_alias=True
    )

    from_: Name = Field(alias="from", description="device that holds the whole model")
    format: WireFormat = "dense"


class Scenario(_Strict):
    """A complete, validated scenario (docs/design.md §4)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    model: ModelSpec
    inputs: InputsSpec = InputsSpec()
    devices: list[DeviceSpec] = Field(min_length=1, max_length=1000)
    network: NetworkSpec = NetworkSpec()
    source: Name
    sink: Name
    partition: PartitionSpec = PartitionSpec()
    prune: PruneSpec = PruneSpec()
    transfer: TransferSpec = TransferSpec()
    deploy: DeploySpec | None = Field(default=None, description="ship weight shards before inference")
    baseline: Baseline = Field(
        default="none", description="single: also run the whole model on the source device alone, for comparison"
    )
    hosts: list[HostSpec] = Field(default_factory=list, description="machines devices share (devices[i].host)")
    profile: Path | None = Field(
        default=None,
        description="runtime profile JSON written by dsim profile --execute: CPU time of every task and message "
        "(relative: to the scenario's folder)",
    )

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
        if packets and net.chunk_kB is not None:
            raise ValueError("network.chunk_kB: a protocol already forwards packet by packet; remove chunk_kB")
        if net.topology != "shared":  # the shared medium retries its frames; elsewhere TCP recovers packets
            fix = "set network.protocol: tcp (packets are lost one by one), or use topology: shared"
            if net.loss is not None and net.protocol in (None, "none"):
                raise ValueError(f"network.loss: needs packets; {fix}")
            for i, link in enumerate(net.links):
                loss = net.loss if link.loss is None else link.loss
                protocol = net.protocol if link.protocol is None else link.protocol
                if loss not in (None, "none") and protocol in (None, "none"):
                    raise ValueError(f"network.links[{i}].loss: needs packets on this link; {fix}")
        return self

    @model_validator(mode="after")
    def _device_rates(self) -> Scenario:
        for i, d in enumerate(self.devices):
            if d.calibrate and d.gflops is not None:
                raise ValueError(f"devices[{i}].gflops: give gflops or calibrate: true, not both")
            if d.calibrate and d.profile is not None:
                raise ValueError(f"devices[{i}].profile: give profile or calibrate: true, not both")
            if not d.calibrate and d.gflops is None and d.profile is None and self.profile is None:
                raise ValueError(f"devices[{i}].gflops: required (or give a preset, a profile, or calibrate: true)")
        return self

    @model_validator(mode="after")
    def _inputs_and_network_consistent(self) -> Scenario:
        """Cross-field checks of inputs and network that need no file (the GraphML edges and the
        connectivity of a custom network are checked by :func:`sim.config.setup.network_setup`)."""
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
        if net.topology != "custom" and net.links:
            edges = {frozenset(e) for e in topology_edges(net.topology, names)}
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
        if self.partition.strategy in SPLIT_STRATEGIES and p.method in ("admm_comm", "comm_structured"):
            raise ValueError(
                f"prune.method: {p.method} prices filters on devices; strategy {self.partition.strategy} gives "
                "rows or whole layers (use ln_structured)"
            )
        if self.partition.strategy in SPLIT_STRATEGIES and self.transfer.exchange != "inputs":
            raise ValueError(
                f"transfer.exchange: partial sums are defined for filters; strategy {self.partition.strategy} "
                "needs exchange: inputs"
            )
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

    _setup: Setup | None = PrivateAttr(default=None)  # the Setup, attached on load (sim.config.load.parse_scenario)

    @property
    def setup(self) -> Setup:
        """The scenario in SI units with its paths resolved (:class:`sim.config.records.Setup`), built once
        when the scenario was loaded by :func:`sim.config.load.parse_scenario`."""
        if self._setup is None:
            raise RuntimeError("a Scenario made without sim.config.load has no setup; load it with sim.config.load")
        return self._setup

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Scenario:
        """A copy with ``update`` applied; its setup follows changed devices and inputs (a changed network
        is converted again, GraphML included, by :func:`sim.config.load.with_network`)."""
        copied = super().model_copy(update=update, deep=deep)
        if self._setup is not None and update:
            if "network" in update:
                raise ValueError("Scenario.model_copy: give a new network with sim.config.load.with_network")
            copied._setup = dataclasses.replace(
                self._setup, devices=device_setups(copied.devices), interval_s=interval_s(copied.inputs)
            )
        return copied

    @property
    def device_names(self) -> list[str]:
        """Device names in scenario order (the order every table and tie-break uses)."""
        return [d.name for d in self.devices]

    def resolved(self) -> dict[str, Any]:
        """The scenario with every default filled in, as plain JSON-ready data."""
        return json.loads(self.model_dump_json())


RENAMED: dict[str, str] = {
    f"{section}.{old}": f"{section}.{new}"
    for section, spec in (("devices", DeviceSpec), ("network", NetworkSpec))
    for old, new in spec.renamed_keys.items()
}
"""Old dotted keys (``devices.mem_bandwidth_gbps``) -> their new names; the old ones are still accepted."""


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files, for editors (``dsim schema``)."""
    return Scenario.model_json_schema()
