"""The headline figures of a run (``summary.json``) as one typed record, :class:`RunSummary`: latency
statistics over frames, throughput, bytes, compute time, and what the simulator or the testbed adds.

:func:`summarize` fills the part both share (a simulated run, :func:`sim.pipeline.evaluate.evaluate`, and
a measured one, :func:`sim.testbed.execute.measured_result`); each then adds its own fields with
:func:`dataclasses.replace`. :meth:`RunSummary.to_dict` is the JSON view, written as ``summary.json``:
optional fields that are ``None`` are left out, so a file holds only what its run produced.

Example::

    >>> import sim
    >>> result = sim.run("scenarios/quickstart.yaml")  # doctest: +SKIP
    >>> result.record.latency_s, result.record.bytes_total  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from sim.analysis.headline import headline
from sim.engine.simulate import Timeline
from sim.workload import wire
from sim.workload.types import Workload


@dataclass(frozen=True)
class Baseline:
    """``baseline: single``: the whole model on the source ``device`` alone (seconds, frames/s), and what
    the split buys over it (:func:`sim.pipeline.evaluate.speedups`)."""

    device: str
    latency_s: float
    service_latency_s: float
    throughput_fps: float
    speedup: float
    service_speedup: float
    throughput_speedup: float


@dataclass(frozen=True)
class Deployment:
    """The deployment phase (shipping the shards before inference): ``deploy_s`` (arrival of the last
    shard, seconds after the start), ``deploy_bytes`` (as sent), ``deploy_bytes_by_format`` (had every
    message gone in each format; ``auto`` the smallest of each) and ``deploy_messages``."""

    deploy_s: float
    deploy_bytes: int
    deploy_bytes_by_format: dict[str, int]
    deploy_messages: int


@dataclass(frozen=True)
class RunSummary:
    """The headline figures of one run (simulated or measured), in SI units.

    Always present: the latency statistics over ``frames`` (seconds), the stream figures of
    :func:`sim.analysis.counters.stream_stats`, bytes and messages sent, FLOPs and busy seconds, each
    frame's latency, the resolved ``scenario`` and the per-layer ``exchange``. Optional (``None`` when the
    run has none, and then absent from the JSON): ``deadline_miss_rate`` (with ``inputs.deadline_ms``),
    ``retransmissions`` (lossy links), ``redundant_flops`` (rows form), ``accuracy``, kept
    kernels (pruned runs), ``message_cpu_s`` (CPU seconds of per-message software costs, by side ``send``/``recv``, when the runtime profile charges them), ``links`` and ``devices`` (rows of ``links.csv`` and ``devices.csv``), the
    ``critical_path`` of the slowest frame (a whole run's, not a sweep point's), ``compute_times`` (profiled devices), ``service_latency_s`` (streams), ``baseline``,
    ``deployment``, ``latency_breakdown`` and ``execution`` (measured runs), ``energy_j`` and
    ``energy_j_per_frame`` (joules, when some device has ``power``).

    Example::

        >>> import sim
        >>> record = sim.run("scenarios/quickstart.yaml").record  # doctest: +SKIP
        >>> record.latency_s, record.to_dict()["latency_s"]  # doctest: +SKIP
    """

    name: str
    frames: int
    latency_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    throughput_fps: float
    departure_interval_s: float
    offered_fps: float | None
    keeps_up: bool | None
    latency_growth_s_per_frame: float
    makespan_s: float
    bytes_total: int
    bytes_by_format: dict[str, int]
    auto_saving: float
    header_bytes: int
    messages: int
    elements_hops: int
    elements_hops_max_link: int
    flops_total: float
    compute_s_total: float
    frame_latency_s: tuple[float, ...]
    scenario: dict[str, Any]
    exchange: dict[str, str]
    deadline_miss_rate: float | None = None
    retransmissions: int | None = None
    redundant_flops: float | None = None
    accuracy: float | None = None
    kept_kernels_per_conv: dict[str, float] | None = None
    kept_kernels: float | None = None
    message_cpu_s: dict[str, float] | None = None
    links: list[dict[str, Any]] | None = None
    devices: list[dict[str, Any]] | None = None
    critical_path: dict[str, Any] | None = None
    compute_times: dict[str, dict[str, int]] | None = None
    service_latency_s: float | None = None
    baseline: Baseline | None = None
    deployment: Deployment | None = None
    latency_breakdown: dict[str, float] | None = None
    execution: dict[str, Any] | None = None
    energy_j: float | None = None
    energy_j_per_frame: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON view (``summary.json``): one key per field that is set, in the file's order; the
        deployment's figures are top-level keys (``deploy_s``, ...)."""
        out: dict[str, Any] = {}
        for key in _JSON_ORDER:
            value = getattr(self, key)
            if value is None and key not in _ALWAYS:
                continue
            if key == "deployment":
                out.update(asdict(value))
            elif key == "baseline":
                out[key] = asdict(value)
            elif key == "frame_latency_s":
                out[key] = list(value)
            else:
                out[key] = value
        return out


# summary.json's key order (every field once; tests/analysis/test_summary.py checks it)
_JSON_ORDER = (
    "name",
    "frames",
    "latency_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "deadline_miss_rate",
    "retransmissions",
    "throughput_fps",
    "departure_interval_s",
    "offered_fps",
    "keeps_up",
    "latency_growth_s_per_frame",
    "makespan_s",
    "bytes_total",
    "bytes_by_format",
    "auto_saving",
    "header_bytes",
    "messages",
    "elements_hops",
    "elements_hops_max_link",
    "flops_total",
    "compute_s_total",
    "frame_latency_s",
    "scenario",
    "exchange",
    "redundant_flops",
    "accuracy",
    "kept_kernels_per_conv",
    "kept_kernels",
    "message_cpu_s",
    "links",
    "devices",
    "energy_j",
    "energy_j_per_frame",
    "critical_path",
    "compute_times",
    "service_latency_s",
    "baseline",
    "deployment",
    "latency_breakdown",
    "execution",
)
_ALWAYS = frozenset(f.name for f in fields(RunSummary) if f.default is MISSING)  # required: written even if None


def summarize(
    name: str,
    resolved: dict[str, Any],
    workload: Workload,
    timeline: Timeline,
    deadline_s: float | None = None,
    accuracy: float | None = None,
    kept_kernels: dict[str, float] | None = None,
    kept_kernel_fraction: float | None = None,
) -> RunSummary:
    """What a simulated and a measured run share, straight from the workload and the timeline
    (:func:`sim.analysis.headline.headline`): latency statistics over frames, throughput, bytes, compute
    time, the exchange per layer (and the rows form's redundant FLOPs), and the model's ``accuracy`` and
    kept kernels (pruned runs; ``kept_kernel_fraction`` over all convs, weighted by their original kernel
    counts) when known. With ``deadline_s`` (seconds, when the scenario sets one) comes the share of frames
    that miss it."""
    figures = headline(workload, timeline, deadline_s)
    figures["frame_latency_s"] = tuple(figures["frame_latency_s"])
    return RunSummary(
        name=name,
        **figures,
        scenario=resolved,
        exchange=dict(workload.exchange),
        redundant_flops=workload.redundant_flops,
        accuracy=accuracy,
        kept_kernels_per_conv=kept_kernels,
        kept_kernels=kept_kernel_fraction if kept_kernels is not None else None,
    )


def deployment_summary(workload: Workload, timeline: Timeline) -> Deployment:
    """The deployment phase's figures (:class:`Deployment`) from its workload and timeline."""
    sizes = [m.sizes for m in workload.messages]
    by_format = {f: sum(s[f] for s in sizes) for f in wire.FORMATS if all(f in s for s in sizes)}
    by_format["auto"] = sum(min(s.values()) for s in sizes)
    return Deployment(
        deploy_s=float(max(timeline.message_end_s, default=0.0)),
        deploy_bytes=int(sum(m.bytes for m in workload.messages)),
        deploy_bytes_by_format=by_format,
        deploy_messages=len(workload.messages),
    )
