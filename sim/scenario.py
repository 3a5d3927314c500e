"""Scenario files: the YAML schema, its validation, and the conversion of unit-suffixed keys to SI units.

A scenario is validated completely before any work starts. Every mistake becomes a one-line
:class:`~sim.errors.UserError` that names the field, e.g. ``devices[2].gflops: must be > 0``.

Keys in the file carry their unit (``bandwidth_mbps``, ``latency_ms``, ``gflops``); the properties named
``*_bps``, ``*_s`` and ``*_flops_per_s`` give the same quantity in SI units (1 Mbps = 1e6 bit/s).

Example::

    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"},
    ...                      "devices": [{"name": "a", "gflops": 1}], "source": "a", "sink": "a"})
    >>> sc.network.bandwidth_bps
    20000000.0
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sim.errors import UserError

WireFormat = Literal["dense", "csr", "coo", "bitmap", "auto"]


class _Strict(BaseModel):
    """Base for every section: unknown keys are refused, values are not silently coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """Which network to split. ``name`` is a zoo name or ``package.module:factory``."""

    name: str = Field(min_length=1)
    input_shape: tuple[int, ...] | None = Field(
        default=None, description="(channels, height, width) of one image; default: the zoo model's own"
    )
    checkpoint: Path | None = Field(default=None, description="state_dict saved by `dsim train`")
    num_classes: int = Field(default=10, gt=0)

    @field_validator("input_shape")
    @classmethod
    def _shape_positive(cls, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if shape is not None and (len(shape) != 3 or min(shape) <= 0):
            raise ValueError("must be three positive integers [channels, height, width]")
        return shape


class InputsSpec(_Strict):
    """What enters the source device: ``frames`` batches of ``batch_size`` images, ``interval_ms`` apart."""

    dataset: Literal["digits", "synthetic"] = "digits"
    batch_size: int = Field(default=1, gt=0)
    frames: int = Field(default=1, gt=0)
    interval_ms: float = Field(default=0.0, ge=0)

    @property
    def interval_s(self) -> float:
        """Time between frame arrivals at the source, in seconds."""
        return self.interval_ms / 1e3


class DeviceSpec(_Strict):
    """One virtual device: its compute rate and a fixed per-layer overhead."""

    name: str = Field(min_length=1)
    gflops: float = Field(gt=0, description="sustained compute rate, 1e9 FLOP/s")
    overhead_ms: float = Field(default=0.0, ge=0, description="fixed time added to every layer it computes")

    @property
    def flops_per_s(self) -> float:
        """Compute rate in FLOP/s."""
        return self.gflops * 1e9

    @property
    def overhead_s(self) -> float:
        """Per-layer overhead in seconds."""
        return self.overhead_ms / 1e3


class NetworkSpec(_Strict):
    """The links between devices. Every link direction is a FIFO queue."""

    topology: Literal["mesh"] = "mesh"
    bandwidth_mbps: float = Field(default=20.0, gt=0, description="rate of each link direction, 1e6 bit/s")
    latency_ms: float = Field(default=1.0, ge=0, description="propagation delay of each link")
    links: list[Any] = Field(default_factory=list, max_length=0, description="per-link overrides (not yet)")

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

    strategy: Literal["contiguous", "round_robin", "random", "balanced", "aligned"] = "contiguous"
    seed: int | None = Field(default=None, ge=0, description="for random strategies; default: scenario seed")
    file: Path | None = Field(default=None, description="partition JSON; replaces the strategy")

    @model_validator(mode="after")
    def _one_source(self) -> PartitionSpec:
        if self.file is not None and "strategy" in self.model_fields_set:
            raise ValueError("partition: give either strategy or file, not both")
        return self


class PruneSpec(_Strict):
    """Pruning applied before the workload is built."""

    method: Literal["none"] = "none"
    amount: float = Field(default=0.0, ge=0, lt=1)
    finetune_epochs: int = Field(default=0, ge=0)


class TransferSpec(_Strict):
    """How messages are packed on the wire (see DESIGN section 3, wire formats)."""

    format: WireFormat = "dense"
    dtype: Literal["float32", "float16", "bfloat16", "int8"] = "float32"
    index_bits: Literal[16, 32, 64] = 32


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
        return self

    @property
    def device_names(self) -> list[str]:
        """Device names in scenario order (the order every table and tie-break uses)."""
        return [d.name for d in self.devices]

    def resolved(self) -> dict[str, Any]:
        """The scenario with every default filled in, as plain JSON-ready data."""
        return json.loads(self.model_dump_json())


def _loc(parts: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as ``devices[2].gflops``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(error: dict[str, Any]) -> str:
    """One short phrase for one pydantic error."""
    kind = error["type"]
    ctx = {k: (f"{v:g}" if isinstance(v, float) else v) for k, v in error.get("ctx", {}).items()}
    phrases = {
        "missing": "required field is missing",
        "extra_forbidden": "unknown key; check the spelling against `dsim schema`",
        "greater_than": f"must be > {ctx.get('gt')}",
        "greater_than_equal": f"must be >= {ctx.get('ge')}",
        "less_than": f"must be < {ctx.get('lt')}",
        "less_than_equal": f"must be <= {ctx.get('le')}",
        "literal_error": f"must be one of {ctx.get('expected')}",
        "too_short": "must not be empty",
        "string_too_short": "must not be empty",
        "too_long": "is not supported yet; leave it empty",
        "string_pattern_mismatch": "must start with a letter or digit and use only letters, digits, . _ -",
    }
    if kind in phrases:
        return phrases[kind]
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"][0].lower() + error["msg"][1:]


def _format_validation_error(exc: ValidationError) -> str:
    """The first error as ``field: problem``, counting the rest."""
    errors = exc.errors()
    first = errors[0]
    loc = _loc(tuple(p for p in first["loc"]))
    text = _message(first)
    if first["type"] == "value_error" and not loc:
        line = text  # model-level checks already name their field
    else:
        line = f"{loc}: {text}" if loc else text
    if first["type"] in ("greater_than", "literal_error", "int_type", "float_type") and "input" in first:
        line += f" (got {first['input']!r})"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return line


def parse_scenario(data: Any, origin: str = "scenario") -> Scenario:
    """Validate already-parsed scenario data, raising a one-line :class:`UserError` on any mistake."""
    if not isinstance(data, dict):
        raise UserError(f"{origin}: must be a mapping of keys (name, model, devices, ...)")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{origin}: {_format_validation_error(exc)}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a YAML scenario file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such scenario file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read scenario file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}; check indentation and quoting") from None
    return parse_scenario(data, origin=str(path))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files, for editors."""
    return Scenario.model_json_schema()
