"""Board presets: peak figures of real boards (FP32 arithmetic, DRAM bandwidth), each with its source.

Peak rates are upper bounds: real conv kernels reach a fraction of them, so a scenario can override any field
(``{preset: rpi4, gflops: 4}``).

Example::

    >>> apply_preset({"name": "cam", "preset": "rpi4", "gflops": 4})["mem_bandwidth_GBps"]
    12.8
"""

from __future__ import annotations

from typing import Any

# Board presets: fields of a scenario device (gflops = 1e9 FP32 FLOP/s, mem_bandwidth_GBps = 1e9 bytes/s).
PRESETS: dict[str, dict[str, Any]] = {
    # Raspberry Pi 4 Model B (BCM2711, 4x Cortex-A72 at 1.5 GHz, CPU only).
    # gflops: High Performance Linpack measured ~8 GFLOPS on a Pi 4 under the 64-bit Raspberry Pi OS
    #   (B. Feiereisen, "Benchmarking the Raspberry Pi 4 with Raspberry Pi OS64", 2022,
    #   https://feiereisen.net/?page_id=924).
    # mem_bandwidth_GBps: LPDDR4-3200 on a 32-bit bus = 3200e6 transfers/s * 4 bytes = 12.8 GB/s
    #   (Raspberry Pi 4 Model B product brief, raspberrypi.com: "LPDDR4-3200 SDRAM").
    "rpi4": {"gflops": 8.0, "mem_bandwidth_GBps": 12.8},
    # NVIDIA Jetson Nano (128 Maxwell CUDA cores at 921.6 MHz).
    # gflops: NVIDIA quotes 472 GFLOPS FP16 (Jetson Nano Developer Kit page, developer.nvidia.com);
    #   FP32 is half of that: 128 cores * 921.6e6 Hz * 2 FLOP per FMA = 235.9 GFLOPS.
    # mem_bandwidth_GBps: 4 GB 64-bit LPDDR4 at 1600 MHz = 25.6 GB/s (Jetson Nano module data sheet).
    "jetson-nano": {"gflops": 235.9, "mem_bandwidth_GBps": 25.6},
    # Phone-class SoC: Qualcomm Snapdragon 855 (Adreno 640 GPU), e.g. 2019 flagship phones.
    # gflops: Adreno 640, 384 ALUs at 585 MHz = 899 GFLOPS FP32
    #   (nanoreview.net, "Snapdragon 855 vs Snapdragon 765G", specifications table).
    # mem_bandwidth_GBps: LPDDR4X at 2133 MHz on 4x16-bit channels = 34.1 GB/s (same source).
    "phone": {"gflops": 899.0, "mem_bandwidth_GBps": 34.1},
}


# Power presets (``devices[i].power: NAME``): watts, and nanojoules per bit on the wire (1 mW/Mbps = 1 nJ/bit).
# Every figure is approximate; docs/energy.md lists the sources and what is assumed.
POWER_PRESETS: dict[str, dict[str, float]] = {
    # A Raspberry Pi 4 on Wi-Fi. idle_w / busy_w: about 2.7 W idle and 6.4 W under a CPU stress test
    #   (secondary measurements, approximate). tx / rx: Wi-Fi device energy of Huang et al., MobiSys'12
    #   (283.17 / 137.01 mW/Mbps), the defaults of LEAF and PureEdgeSim. No tail is modelled.
    "wifi-pi4": {"idle_w": 2.7, "busy_w": 6.4, "tx_nj_per_bit": 283.17, "rx_nj_per_bit": 137.01},
    # A phone on LTE. tx / rx: LTE device energy of Huang et al., MobiSys'12 (438.4 / 51.97 mW/Mbps), the
    #   defaults of LEAF and PureEdgeSim. tail: the radio stays 11.576 s at about 1.06 W after a transfer
    #   (the RRC tail of the same paper). idle_w / busy_w: an assumed phone SoC (1 W idle, 4 W busy), not
    #   a measurement.
    "lte-phone": {
        "idle_w": 1.0,
        "busy_w": 4.0,
        "tx_nj_per_bit": 438.4,
        "rx_nj_per_bit": 51.97,
        "tail_s": 11.576,
        "tail_w": 1.06,
    },
    # A Jetson Nano on wired Ethernet. busy_w: its 10 W power mode (NVIDIA's documented budget); idle_w:
    #   an assumed 1.5 W. tx / rx: 0, the wired link's energy is left out (assumed negligible).
    "ethernet-jetson": {"idle_w": 1.5, "busy_w": 10.0},
}


def apply_preset(fields: dict[str, Any]) -> dict[str, Any]:
    """A scenario device's fields with its ``preset`` figures filled in under the fields it gives itself.

    An unknown preset is left for the schema to refuse. ``gflops`` is not filled when ``calibrate`` is set.
    """
    preset = PRESETS.get(fields.get("preset"))  # type: ignore[arg-type]
    if preset is None:
        return fields
    merged = {k: v for k, v in preset.items() if not (k == "gflops" and fields.get("calibrate"))}
    merged.update(fields)
    return merged


def apply_power_preset(power: Any) -> Any:
    """A device's ``power`` setting with a preset resolved: a preset name becomes its figures, and a mapping
    with ``preset`` gets the figures it does not give itself. Unknown names are left for the schema.

    >>> apply_power_preset({"preset": "wifi-pi4", "idle_w": 3.0})["idle_w"], apply_power_preset("lte-phone")["tail_s"]
    (3.0, 11.576)
    """
    if isinstance(power, str) and power in POWER_PRESETS:
        return dict(POWER_PRESETS[power])
    if isinstance(power, dict) and power.get("preset") in POWER_PRESETS:
        return {**POWER_PRESETS[power["preset"]], **{k: v for k, v in power.items() if k != "preset"}}
    return power
