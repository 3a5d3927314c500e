"""Result tables of a run (docs/design.md §5): ``transfers`` has one row per message, ``compute`` one row per
task, ``hops`` one row per transmission on one link queue; traffic matrices and bytes by wire format.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.engine.simulate import Timeline
from sim.workload import wire
from sim.workload.types import Workload

TRANSFER_COLUMNS = [
    "frame",
    "layer",
    "src",
    "dst",
    "channels",
    "elements",
    "nnz",
    "dense_bytes",
    "csr_bytes",
    "coo_bytes",
    "bitmap_bytes",
    "format",
    "bytes",
    "hops",
    "start_s",
    "end_s",
    "header_bytes",
    "multicast_copy",
]
# multicast_copy: the row's payload rode on an earlier row's multicast transmission, so its ``bytes`` is 0
CPU_COLUMNS = ["send_cpu_s", "recv_cpu_s"]
# added after TRANSFER_COLUMNS when a run charges per-message software time (Timeline.cpu_spans): the CPU
# seconds the sender spent on the message before it went on the wire, and the receiver after it arrived
TRANSIT_COLUMN = "transit_s"  # a runtime profile's delay of the message's arrival beyond the wire (no CPU)
RETRANSMISSIONS = "retransmissions"  # lost transmissions of the message; a column only when a link can lose
COMPUTE_COLUMNS = ["frame", "layer", "device", "flops", "start_s", "end_s"]
WAKE_COLUMN = "wake_s"  # a runtime profile's extra CPU seconds of the task after its device idled (in its time)
HOP_COLUMNS = ["frame", "layer", "link", "src", "dst", "bytes", "start_s", "end_s", "sender", "arrive_s"]


def transfers_table(workload: Workload, timeline: Timeline) -> pd.DataFrame:
    """One row per message, in creation order (docs/design.md §5); with a ``retransmissions`` column (lost
    transmissions over the message's packets and hops) when some link of the run can lose packets."""
    names = workload.devices
    copy = [k < len(timeline.carried_by) and timeline.carried_by[k] != k for k in range(len(workload.messages))]
    rows = [
        (
            m.frame,
            m.layer,
            names[m.src],
            names[m.dst],
            m.channels,
            m.elements,
            m.nnz,
            *(m.sizes.get(f, np.nan) for f in wire.FORMATS),
            m.format,
            0 if copy[k] else m.bytes,
            timeline.message_hops[k],
            timeline.message_start_s[k],
            timeline.message_end_s[k],
            m.header_bytes,
            copy[k],
        )
        for k, m in enumerate(workload.messages)
    ]
    table = pd.DataFrame(rows, columns=TRANSFER_COLUMNS)
    if timeline.retransmissions:
        table[RETRANSMISSIONS] = timeline.retransmissions
    if timeline.cpu_spans:
        cpu = {side: np.zeros(len(rows)) for side in ("send", "recv")}
        for span in timeline.cpu_spans:
            cpu[span.side][span.message] += span.cpu_s
        table["send_cpu_s"], table["recv_cpu_s"] = cpu["send"], cpu["recv"]
    if timeline.transit_s:
        table[TRANSIT_COLUMN] = timeline.transit_s
    return table


def compute_table(workload: Workload, timeline: Timeline) -> pd.DataFrame:
    """One row per task, in workload order; with a ``wake_s`` column when the run charged a runtime profile's
    wake-up after idling (part of the task's time from ``start_s`` to ``end_s``)."""
    names = workload.devices
    rows = [
        (t.frame, t.layer, names[t.device], t.flops, timeline.task_start_s[k], timeline.task_end_s[k])
        for k, t in enumerate(workload.tasks)
    ]
    table = pd.DataFrame(rows, columns=COMPUTE_COLUMNS)
    if timeline.task_wake_s:
        table[WAKE_COLUMN] = timeline.task_wake_s
    return table


def traffic_matrix(transfers: pd.DataFrame, devices: list[str]) -> pd.DataFrame:
    """Bytes sent from each device (rows, ``src``) to each device (columns, ``dst``) in ``transfers``."""
    matrix = transfers.pivot_table(index="src", columns="dst", values="bytes", aggfunc="sum", fill_value=0)
    matrix = matrix.reindex(index=devices, columns=devices, fill_value=0).astype("int64")
    matrix.index.name, matrix.columns.name = "src", "dst"
    return matrix


def hop_table(workload: Workload, timeline: Timeline) -> pd.DataFrame:
    """One row per transmission on one queue: ``frame, layer, link, src, dst, bytes, start_s, end_s, sender,
    arrive_s``.

    ``src`` and ``dst`` are the message's ends (``dst`` lists every receiver of a multicast, comma-separated);
    ``sender`` is the node that put this transmission on the link (``src``, or a node forwarding it);
    ``arrive_s`` is when its last byte reaches the link's far end (``end_s`` plus the link's latency).
    """
    names = workload.devices
    rows = []
    for h in timeline.hops:
        msg = workload.messages[h.message]
        dst = h.link.dst if "," in h.link.dst else names[msg.dst]
        rows.append(
            (
                *(msg.frame, msg.layer, h.link.queue_name, names[msg.src], dst, h.nbytes, h.start_s, h.end_s),
                *(h.link.src, h.end_s + h.link.latency_s),
            )
        )
    return pd.DataFrame(rows, columns=HOP_COLUMNS)
