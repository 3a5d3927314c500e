"""A shaped test network for real split runs (``dsim execute --shape``): one Linux network namespace per
device (and one for a star's switch), a veth pair per topology edge, and ``tc tbf`` at each link
direction's rate (with ``netem`` delay for the link latency when the kernel has it), always torn down.
A link with Bernoulli loss (``network.loss``) drops that share of the packets arriving over it, with an
nftables ``numgen random`` rule in the receiving namespace (:func:`loss_commands`); the rules go with the
namespaces.

Every network node is a namespace that routes: device ``i`` has the address ``10.200.0.<i+1>`` on its
loopback, each edge ``k`` a /30 of its own (``10.201.<k>.1``, ``.2``), and every node on a device pair's
fewest-hop route (:meth:`sim.engine.network.Network.route`) gets a route to the far device through the next
node, so traffic follows the simulator's routes hop by hop (a switch namespace forwards packet by packet).
Traffic never leaves these namespaces. Names carry the creating process's id (``dsim<pid>-...``), so
parallel runs never collide, and a run killed before it could tear down (``kill -9``) is recognised: the
next testbed removes the namespaces of dsim processes that no longer exist (:func:`remove_stale`).

Example (as root)::

    >>> with testbed(scenario) as bed:       # doctest: +SKIP
    ...     bed.namespaces["cam"], bed.addresses["cam"]
    ('dsim4242-0', '10.200.0.1')
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sim.config.schema import Scenario
from sim.engine import assemble
from sim.engine.loss import Bernoulli
from sim.engine.network import Network
from sim.errors import RunFailure, UserError

DEFAULT_BURST_BYTES = 2000  # tbf bucket: one full Ethernet frame and some headroom
QUEUE_LIMIT_BYTES = 4_000_000  # tbf queue: large enough that TCP never sees a drop at these rates
COMMAND_TIMEOUT_S = 20.0
NUMGEN_MOD = 1_000_000  # a loss probability is applied in steps of 1e-6
LOSS_TABLE = "dsim_loss"  # the nftables table (family inet) of the loss rules in each namespace


@dataclass(frozen=True)
class Testbed:
    """The namespaces built for one scenario: device name -> namespace and -> address."""

    namespaces: dict[str, str]
    addresses: dict[str, str]
    burst_bytes: int
    latency_applied: bool  # False when the kernel has no netem: links then have no added delay
    # link "a-b" (one per topology edge) -> its two ends, (namespace, interface)
    interfaces: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    def links_down(self) -> list[str]:
        """The links (``"a-b"``) with an end that is not up (``ip link set ... down`` on either side)."""
        return [name for name, ends in self.interfaces.items() if not all(_is_up(ns, dev) for ns, dev in ends)]


def _is_up(ns: str, dev: str) -> bool:
    """Whether interface ``dev`` in namespace ``ns`` is administratively up with a carrier."""
    done = subprocess.run(
        ["ip", "-n", ns, "-o", "link", "show", "dev", dev], capture_output=True, text=True,
        timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip
    return done.returncode == 0 and "state UP" in done.stdout


def check_available() -> None:
    """Refuse (one line) unless this is Linux, running as root, with ``ip`` and ``tc`` on the PATH."""
    if not sys.platform.startswith("linux"):
        raise UserError("--shape: needs Linux network namespaces; run without --shape (loopback)")
    if os.geteuid() != 0:
        raise UserError("--shape: needs root (network namespaces and tc); run as root or without --shape")
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        raise UserError(f"--shape: {' and '.join(missing)} not found (install iproute2) or run without --shape")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run one iproute2 command; raise RuntimeError with its stderr when it fails."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


@contextmanager
def testbed(scenario: Scenario, burst_bytes: int = DEFAULT_BURST_BYTES) -> Iterator[Testbed]:
    """Build the scenario's network as namespaces and shaped veths, yield it, and always delete it.

    Refused (one line) for the ``shared`` topology, which has no per-link shaping here."""
    check_available()
    if scenario.network.topology == "shared":
        raise UserError("network.topology: 'shared' cannot be built with --shape; use mesh, star, line, ring or custom")
    network = assemble.network(scenario)
    loss = loss_rates(network)
    stale = remove_stale()
    if stale:
        print(f"--shape: removed {len(stale)} network namespaces left by killed dsim runs", file=sys.stderr)
    created: list[str] = []
    try:
        yield _build(network, scenario.device_names, burst_bytes, created, loss)
    except RunFailure as exc:  # say what was removed, after removing it
        exc.cleaned.append(f"{_delete(created)} network namespaces removed")
        raise
    finally:
        _delete(created)


STALE = re.compile(r"^dsim(\d+)-\d+$")  # the names _build gives: dsim<pid>-<node index>


def remove_stale() -> list[str]:
    """Delete the namespaces named ``dsim<pid>-<i>`` whose process ``pid`` no longer runs (a run killed
    before its teardown); those of live processes, and every other namespace, are left alone. Returns the
    names deleted. Their veths go with them.

    Example (as root)::

        >>> remove_stale()  # doctest: +SKIP
        ['dsim4380-0', 'dsim4380-1']
    """
    listed = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    ).stdout.split()
    stale = [ns for ns in listed if (m := STALE.match(ns)) and not os.path.exists(f"/proc/{m[1]}")]
    _delete(list(stale))
    return stale


def _delete(created: list[str]) -> int:
    """Delete the namespaces in ``created`` (newest first, emptying it); how many there were."""
    count = len(created)
    for ns in reversed(created):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)
    created.clear()
    return count


def _build(
    network: Network, devices: list[str], burst_bytes: int, created: list[str], loss: dict[tuple[str, str], float]
) -> Testbed:
    tag = f"dsim{os.getpid()}"
    nodes = list(devices) + sorted(n for n in network.graph.nodes if n not in devices)
    ns = {n: f"{tag}-{i}" for i, n in enumerate(nodes)}
    for n in nodes:
        _run("ip", "netns", "add", ns[n])
        created.append(ns[n])
        _run("ip", "-n", ns[n], "link", "set", "lo", "up")
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
            _run("ip", "netns", "exec", ns[n], "sysctl", "-q", "-w", key)
    address = {d: f"10.200.0.{i + 1}" for i, d in enumerate(devices)}
    for d in devices:
        _run("ip", "-n", ns[d], "addr", "add", f"{address[d]}/32", "dev", "lo")
    links = {(link.src, link.dst): link for link in network.links()}
    edges = list(dict.fromkeys(tuple(sorted((a, b), key=nodes.index)) for a, b in links))
    if len(edges) > 250 * 256:
        raise UserError("network: too many links to build with --shape")
    iface: dict[tuple[str, str], str] = {}  # (node, neighbour) -> interface on node
    peer_addr: dict[tuple[str, str], str] = {}  # (node, neighbour) -> neighbour's address on their edge
    netem = True
    pid = os.getpid() % 10**6
    for k, (a, b) in enumerate(edges):
        sub = f"10.{201 + k // 256}.{k % 256}"
        ia, ib = f"d{pid}e{k}a", f"d{pid}e{k}b"
        _run("ip", "link", "add", ia, "netns", ns[a], "type", "veth", "peer", "name", ib, "netns", ns[b])
        for node, name, host in ((a, ia, 1), (b, ib, 2)):
            _run("ip", "-n", ns[node], "addr", "add", f"{sub}.{host}/30", "dev", name)
            _run("ip", "-n", ns[node], "link", "set", name, "up")
        iface[(a, b)], iface[(b, a)] = ia, ib
        peer_addr[(a, b)], peer_addr[(b, a)] = f"{sub}.2", f"{sub}.1"
        for src, dst in ((a, b), (b, a)):
            netem = _shape(
                ns[src],
                iface[(src, dst)],
                links[(src, dst)].bandwidth_bps,
                burst_bytes,
                links[(src, dst)].latency_s,
                netem,
            )
    for node in nodes:  # dropped on arrival: a lost packet has used the sender's shaped link, as on air
        drops = [(iface[(node, src)], p) for (src, dst), p in loss.items() if dst == node]
        for command in loss_commands(drops):
            _run("ip", "netns", "exec", ns[node], *command)
    for src in devices:
        for dst in devices:
            if src == dst:
                continue
            path = [src] + [link.dst for link in network.route(src, dst)]
            for here, nxt in itertools.pairwise(path):
                cmd = ["ip", "-n", ns[here], "route", "replace", f"{address[dst]}/32", "via", peer_addr[(here, nxt)]]
                _run(*cmd, *(["src", address[src]] if here == src else []))
    ends: dict[str, tuple[tuple[str, str], ...]] = {
        f"{a}-{b}": ((ns[a], iface[(a, b)]), (ns[b], iface[(b, a)])) for a, b in edges
    }
    return Testbed({d: ns[d] for d in devices}, address, burst_bytes, netem, ends)


def _shape(ns: str, dev: str, rate_bps: float, burst_bytes: int, latency_s: float, netem: bool) -> bool:
    """tbf at ``rate_bps`` on ``dev``'s egress, with a netem child for ``latency_s`` when available.
    Returns whether netem is (still) available."""
    rate = f"{round(rate_bps)}bit"
    _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf", "rate", rate,
         "burst", str(burst_bytes), "limit", str(QUEUE_LIMIT_BYTES))  # fmt: skip
    if latency_s > 0 and netem:
        try:
            _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", "netem",
                 "delay", f"{latency_s * 1e6:.0f}us", "limit", "100000")  # fmt: skip
        except RuntimeError:
            return False  # no sch_netem in this kernel: links run without added delay (reported)
    return netem


def loss_rates(network: Network) -> dict[tuple[str, str], float]:
    """The loss probability of each lossy link direction ``(src, dst)`` of ``network``; refuse (one line)
    what ``--shape`` cannot apply: jitter (no netem), loss other than Bernoulli, or loss without ``nft`` and
    an nf_tables with ``numgen``."""
    rates: dict[tuple[str, str], float] = {}
    for link in network.links():
        if link.impairment is None:
            continue
        if link.impairment.jitter is not None:
            raise UserError(
                "network.jitter_ms: --shape cannot delay packets (no netem here); remove it or run without --shape"
            )
        if not isinstance(link.impairment.loss, Bernoulli):
            raise UserError("network.loss: --shape applies model: bernoulli only; use it or run without --shape")
        rates[(link.src, link.dst)] = link.impairment.loss.p
    if not rates:
        return rates
    if shutil.which("nft") is None:
        raise UserError("network.loss: --shape needs nft (Debian: apt-get install nftables) or run without loss")
    probe = (
        f"add table inet {LOSS_TABLE}_probe; add chain inet {LOSS_TABLE}_probe c {{ type filter hook prerouting "
        f"priority -150; policy accept; }}; add rule inet {LOSS_TABLE}_probe c numgen random mod 2 < 1 drop"
    )
    done = subprocess.run(["nft", "-c", probe], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"nft exit status {done.returncode}"])[0]
        raise UserError(f"network.loss: this kernel's nf_tables cannot drop at random (numgen): {reason}")
    return rates


def loss_commands(drops: Sequence[tuple[str, float]]) -> list[list[str]]:
    """The ``nft`` commands (argument lists) that drop packets arriving on interface ``iface`` with
    probability ``p``, for each ``(iface, p)`` of ``drops``, in the current namespace: one ``inet`` table
    :data:`LOSS_TABLE`, a prerouting chain, one ``numgen random mod N < K`` rule per interface (``K / N``
    rounds ``p`` to :data:`NUMGEN_MOD` steps; ``p = 1`` drops every packet).

    >>> loss_commands([("veth0", 0.01)])[-1][-1]
    'iifname "veth0" numgen random mod 1000000 < 10000 counter drop'
    """
    if not drops:
        return []
    chain = "{ type filter hook prerouting priority -150; policy accept; }"
    commands = [
        ["nft", "add", "table", "inet", LOSS_TABLE],
        ["nft", "add", "chain", "inet", LOSS_TABLE, "ingress", chain],
    ]
    for iface, p in drops:
        share = round(p * NUMGEN_MOD)
        draw = f"numgen random mod {NUMGEN_MOD} < {share} " if share < NUMGEN_MOD else ""  # p = 1: every packet
        commands.append(["nft", "add", "rule", "inet", LOSS_TABLE, "ingress", f'iifname "{iface}" {draw}counter drop'])
    return commands
