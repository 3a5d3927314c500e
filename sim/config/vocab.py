"""Every word a scenario may use for a choice, defined once as a ``Literal`` (with its tuple of values).

The schema (:mod:`sim.config.schema`) validates against these types, so a value outside them never reaches
the domain modules, which import the tuples instead of writing the words a second time.

Example::

    >>> TOPOLOGIES
    ('mesh', 'star', 'ring', 'line', 'custom', 'shared')
    >>> "auto" in WIRE_FORMATS, "auto" in CONCRETE_FORMATS
    (True, False)
"""

from __future__ import annotations

from typing import Literal, get_args

Topology = Literal["mesh", "star", "ring", "line", "custom", "shared"]
Duplex = Literal["full", "half"]
Strategy = Literal["contiguous", "round_robin", "random", "balanced", "aligned", "comm_aware", "spatial", "pipeline"]
SPLIT_STRATEGIES = ("spatial", "pipeline")  # give rows or whole layers (docs/design.md §3b), not filters
StructuredMethod = Literal["ln_structured", "random_structured", "comm_structured"]
UnstructuredMethod = Literal["l1_unstructured", "random_unstructured", "global_unstructured"]
PruneMethod = Literal[
    "none", StructuredMethod, UnstructuredMethod, "kernel_magnitude", "block_diagonal", "admm", "admm_comm"
]
ConcreteFormat = Literal["dense", "csr", "coo", "bitmap"]  # in tie-break order (smallest first wins ties)
WireFormat = Literal[ConcreteFormat, "auto"]
Dtype = Literal["float32", "float16", "bfloat16", "int8"]
IndexBits = Literal[16, 32, 64]
ConcreteExchange = Literal["inputs", "partial_sums"]
Exchange = Literal[ConcreteExchange, "auto"]
ChannelHeader = Literal["none", "index_list", "bitmap"]
LabelledDataset = Literal["digits", "cifar10", "fashion-mnist"]  # datasets with labels: training and accuracy need one
Dataset = Literal[LabelledDataset, "synthetic"]
Preset = Literal["rpi4", "jetson-nano", "phone"]
PowerPreset = Literal["wifi-pi4", "lte-phone", "ethernet-jetson"]
Baseline = Literal["none", "single"]

TOPOLOGIES: tuple[str, ...] = get_args(Topology)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
STRUCTURED: tuple[str, ...] = get_args(StructuredMethod)
UNSTRUCTURED: tuple[str, ...] = get_args(UnstructuredMethod)
PRUNE_METHODS: tuple[str, ...] = get_args(PruneMethod)
CONCRETE_FORMATS: tuple[str, ...] = get_args(ConcreteFormat)
WIRE_FORMATS: tuple[str, ...] = get_args(WireFormat)
DTYPES: tuple[str, ...] = get_args(Dtype)
INDEX_BITS: tuple[int, ...] = get_args(IndexBits)
EXCHANGES: tuple[str, ...] = get_args(ConcreteExchange)
CHANNEL_HEADERS: tuple[str, ...] = get_args(ChannelHeader)
LABELLED_DATASETS: tuple[str, ...] = get_args(LabelledDataset)
DATASETS: tuple[str, ...] = get_args(Dataset)
POWER_PRESETS: tuple[str, ...] = get_args(PowerPreset)
