"""Packet loss on the shaped test network (``dsim execute --shape``): the nftables rules' text, the refusals,
and, as root with ``nft``, that a 100 % rule drops, a 0 % rule passes, and the rules go with the testbed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from sim.config.load import parse_scenario
from sim.engine import assemble
from sim.errors import UserError
from sim.testbed import netns
from tests.helpers import scenario_dict

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HAS_NFT = shutil.which("nft") is not None
needs_nft = pytest.mark.skipif(not (IS_ROOT and HAS_NFT), reason="needs root and nft (apt-get install nftables)")
UDP_ECHO = """
import socket, sys
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); rx.bind(("127.0.0.1", 0)); rx.settimeout(0.5)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
got = 0
for _ in range(20):
    tx.sendto(b"x", rx.getsockname())
    try:
        rx.recv(16); got += 1
    except socket.timeout:
        pass
print(got)
"""


def _network(**net: object):
    data = scenario_dict(2, network={"topology": "mesh", "bandwidth_mbps": 20, "latency_ms": 0, **net})
    return parse_scenario(data, origin="test")


def test_the_rule_drops_the_share_asked_on_the_interface_named() -> None:
    assert netns.loss_commands([]) == []
    table = ["nft", "add", "table", "inet", "dsim_loss"]
    chain = ["nft", "add", "chain", "inet", "dsim_loss", "ingress"]
    chain.append("{ type filter hook prerouting priority -150; policy accept; }")
    rule = ["nft", "add", "rule", "inet", "dsim_loss", "ingress"]
    assert netns.loss_commands([("d7e0b", 0.03), ("d7e1a", 0.0000014)]) == [
        table,
        chain,
        [*rule, 'iifname "d7e0b" numgen random mod 1000000 < 30000 counter drop'],
        [*rule, 'iifname "d7e1a" numgen random mod 1000000 < 1 counter drop'],  # 1.4e-6 rounds to 1e-6
    ]
    assert netns.loss_commands([("lo", 1.0)])[-1][-1] == 'iifname "lo" counter drop'


def test_shape_refuses_what_it_cannot_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    jitter = _network(protocol="tcp", jitter_ms={"std": 1.0})
    with pytest.raises(UserError, match=r"^network\.jitter_ms: --shape cannot delay packets"):
        netns.loss_rates(assemble.network(jitter))
    bursty = _network(protocol="tcp", loss={"model": "gilbert_elliott", "p_good_bad": 0.1, "p_bad_good": 0.5})
    with pytest.raises(UserError, match=r"^network\.loss: --shape applies model: bernoulli only"):
        netns.loss_rates(assemble.network(bursty))
    assert netns.loss_rates(assemble.network(_network(protocol="tcp", loss={"p": 0}))) == {}  # p: 0 loses nothing
    lossy = assemble.network(_network(protocol="tcp", loss={"p": 0.02}))
    monkeypatch.setattr(netns.shutil, "which", lambda tool: None)
    with pytest.raises(UserError, match=r"^network\.loss: --shape needs nft \(Debian: apt-get install nftables\)"):
        netns.loss_rates(lossy)


@needs_nft
def test_a_full_loss_rule_drops_everything_and_a_zero_one_nothing() -> None:
    ns = f"dsim{os.getpid()}-losstest"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=20)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=20)

        def delivered(p: float) -> int:
            subprocess.run(["ip", "netns", "exec", ns, "nft", "flush", "ruleset"], check=True, timeout=20)
            for command in netns.loss_commands([("lo", p)]):
                subprocess.run(["ip", "netns", "exec", ns, *command], check=True, timeout=20)
            cmd = ["ip", "netns", "exec", ns, sys.executable, "-c", UDP_ECHO]
            return int(subprocess.run(cmd, check=True, timeout=60, capture_output=True, text=True).stdout)

        assert delivered(1.0) == 0
        assert delivered(0.999999) == 0  # numgen draws 0..999999, only 999999 passes (a false failure: 2e-5)
        assert delivered(0.0) == 20
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=20, check=False)


def _ruleset(namespace: str) -> str:
    cmd = ["ip", "netns", "exec", namespace, "nft", "list", "ruleset"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout


def _ours() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(f"dsim{os.getpid()}-")]


@needs_nft
def test_the_testbed_drops_on_each_lossy_link_and_removes_its_rules_even_on_errors() -> None:
    # d0 -- d1 at 5 % loss; the rule sits in each receiver's namespace, on the interface of that link.
    sc = _network(protocol="tcp", loss={"p": 0.05})
    with pytest.raises(RuntimeError, match="boom"), netns.testbed(sc) as bed:
        for device in ("d0", "d1"):
            rules = _ruleset(bed.namespaces[device])
            assert "numgen random mod 1000000 < 50000" in rules and rules.count(" drop") == 1
        raise RuntimeError("boom")
    assert _ours() == []
