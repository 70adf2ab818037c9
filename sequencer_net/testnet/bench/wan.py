"""`--wan-delay-ms D`: each validator in its own network namespace, a one-way
delay of D between any two of them.

Layout (tag = this process's id, so two runs never share names):

    root namespace                          namespace seqbench-TAG-I
    bridge sqbTAGp (validator links) --veth-- "p2p" 10.231.X.(I+2)/24, netem delay D
    bridge sqbTAGa (API, 10.232.X.1)  --veth-- "api" 10.232.X.(I+2)/24, no delay

Validators talk to each other only over their "p2p" interfaces; netem delays
every packet leaving one by D, so a message between two validators takes D
more each way, whatever its direction. The benchmark's client stays in the
root namespace and reaches each node's API over the second, undelayed bridge,
so submit-to-commit latency counts the validators' delays and not the
client's. Everything is created when the benchmark starts (it needs root and
iproute2's `ip` and `tc`, and a kernel with the netem qdisc) and removed when
it ends, also on failure or Ctrl-C.

Node processes enter their namespace at fork: the launching thread switches
into it with setns(2), starts the process (which inherits the thread's
namespace) and switches back, so the recorded command line is the node's own.
The launching thread is the one `parent_death` forks from (it lives as long as
the benchmark, so the nodes' SIGTERM-on-parent-death comes only when the
benchmark's process dies).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from sequencer_net import parent_death
from sequencer_net.testnet.manifest import Manifest
from sequencer_net.testnet.network import NodeSpec

P2P_SUBNET = "10.231"
API_SUBNET = "10.232"
NETEM_LIMIT_PACKETS = 100_000
"""netem's queue (default 1,000 packets) must hold D's worth of traffic at full
load, or it drops packets and measures loss instead of delay."""
CLONE_NEWNET = 0x40000000
IP_TIMEOUT_S = 10.0
INSTALL_HINT = "install iproute2: apt-get install iproute2"

T = TypeVar("T")


class WanUnavailable(RuntimeError):
    """The WAN mode cannot run here; the message says what is missing and how to get it."""


def check_prerequisites(
    euid: int | None = None, which: Callable[[str], str | None] = shutil.which
) -> None:
    """Root, `ip` and `tc`; raise WanUnavailable naming each one that is missing."""
    missing = []
    if (os.geteuid() if euid is None else euid) != 0:
        missing.append(
            "root: network namespaces, bridges and netem need it (run as root, e.g. with sudo)"
        )
    tools = [tool for tool in ("ip", "tc") if which(tool) is None]
    if tools:
        missing.append(f"{' and '.join(f'`{t}`' for t in tools)} not found: {INSTALL_HINT}")
    if missing:
        raise WanUnavailable("--wan-delay-ms needs " + "; ".join(missing))


def probe_netem(tag: int | None = None) -> None:
    """Raise WanUnavailable unless this kernel can add a netem qdisc: tried on a
    veth pair in a scratch namespace, removed again whatever happens."""
    layout = WanLayout(validators=1, delay_ms=1.0, tag=os.getpid() if tag is None else tag)
    ns = f"seqbench-probe-{layout.tag}"
    try:
        _run("ip", "netns", "add", ns)
        _run("ip", "-n", ns, "link", "add", "p2p", "type", "veth", "peer", "name", "peer")
        _add_netem(ns, layout.delay_ms)
    finally:
        _run_quiet("ip", "netns", "del", ns)


def _add_netem(ns: str, delay_ms: float) -> None:
    command = ("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "p2p", "root", "netem")
    try:
        subprocess.run(
            [*command, "delay", f"{delay_ms:g}ms", "limit", str(NETEM_LIMIT_PACKETS)],
            check=True,
            capture_output=True,
            text=True,
            timeout=IP_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.strip()
        if "unknown" in detail.lower():
            raise WanUnavailable(
                f"this kernel ({os.uname().release}) has no netem qdisc (tc said: "
                f"{detail}); it needs CONFIG_NET_SCH_NETEM: load it with "
                "`modprobe sch_netem`, or run on a kernel that has it "
                "(--wan-delay-ms 0 runs the namespaces without delay)"
            ) from None
        raise WanUnavailable(f"netem delay on {ns} failed: {detail}") from None


def _run(*args: str) -> None:
    try:
        subprocess.run(args, check=True, capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        raise WanUnavailable(f"`{' '.join(args)}` failed: {exc.stderr.strip()}") from None


def _run_quiet(*args: str) -> str:
    """Run a command whose failure is not an error; its standard output."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False)
    return result.stdout


def list_namespaces() -> list[str]:
    if shutil.which("ip") is None:
        return []
    listing = _run_quiet("ip", "netns", "list")
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def list_links() -> list[str]:
    if shutil.which("ip") is None:
        return []
    names = []
    for line in _run_quiet("ip", "-o", "link", "show").splitlines():
        parts = line.split(": ")
        if len(parts) > 1:
            names.append(parts[1].split("@")[0])
    return names


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@dataclass(frozen=True, slots=True)
class WanLayout:
    validators: int
    delay_ms: float
    tag: int

    @property
    def subnet_octet(self) -> int:
        return self.tag % 250

    @property
    def p2p_bridge(self) -> str:
        return f"sqb{self.tag}p"

    @property
    def api_bridge(self) -> str:
        return f"sqb{self.tag}a"

    @property
    def client_ip(self) -> str:
        return f"{API_SUBNET}.{self.subnet_octet}.1"

    def namespace(self, index: int) -> str:
        return f"seqbench-{self.tag}-{index}"

    def p2p_ip(self, index: int) -> str:
        return f"{P2P_SUBNET}.{self.subnet_octet}.{index + 2}"

    def api_ip(self, index: int) -> str:
        return f"{API_SUBNET}.{self.subnet_octet}.{index + 2}"

    def names(self) -> tuple[list[str], list[str]]:
        """(namespaces, root-namespace links) this layout creates."""
        return [self.namespace(i) for i in range(self.validators)], [
            self.p2p_bridge,
            self.api_bridge,
        ]


class WanNetwork:
    """Creates the layout's namespaces, links and delays; `destroy` removes them."""

    def __init__(self, layout: WanLayout) -> None:
        if not 1 <= layout.validators <= 200:
            raise WanUnavailable("--wan-delay-ms supports 1 to 200 validators")
        self.layout = layout

    def create(self) -> None:
        """Build everything; on any failure remove what was built and raise."""
        check_prerequisites()
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise

    def _create(self) -> None:
        lay = self.layout
        self._check_subnets_free()
        for bridge in (lay.p2p_bridge, lay.api_bridge):
            _run("ip", "link", "add", bridge, "type", "bridge")
            _run("ip", "link", "set", bridge, "up")
        _run("ip", "addr", "add", f"{lay.client_ip}/24", "dev", lay.api_bridge)
        for index in range(lay.validators):
            ns = lay.namespace(index)
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            self._attach(index, "p2p", lay.p2p_bridge, lay.p2p_ip(index))
            self._attach(index, "api", lay.api_bridge, lay.api_ip(index))
            if lay.delay_ms > 0:
                _add_netem(ns, lay.delay_ms)

    def _attach(self, index: int, role: str, bridge: str, address: str) -> None:
        ns = self.layout.namespace(index)
        host_end, ns_end = f"sqb{self.layout.tag}{role[0]}{index}", f"sqb{self.layout.tag}n"
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _run("ip", "link", "set", ns_end, "netns", ns)
        _run("ip", "link", "set", host_end, "master", bridge)
        _run("ip", "link", "set", host_end, "up")
        _run("ip", "-n", ns, "link", "set", ns_end, "name", role)
        _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", role)
        _run("ip", "-n", ns, "link", "set", role, "up")

    def _check_subnets_free(self) -> None:
        routes = _run_quiet("ip", "-4", "route", "show")
        octet = self.layout.subnet_octet
        for subnet in (P2P_SUBNET, API_SUBNET):
            prefix = f"{subnet}.{octet}."
            if prefix in routes:
                raise WanUnavailable(
                    f"{prefix}0/24 is already routed on this machine; another benchmark "
                    "may be running (or remove the route)"
                )

    def destroy(self) -> list[str]:
        """Remove every namespace and bridge of this layout; return what could not be
        removed (empty when all is gone)."""
        namespaces, _ = self.layout.names()
        for ns in namespaces:
            if ns in list_namespaces():
                _run_quiet("ip", "netns", "del", ns)
        for link in self._own_links():
            _run_quiet("ip", "link", "del", link)
        left = [ns for ns in namespaces if ns in list_namespaces()]
        return left + self._own_links()

    def _own_links(self) -> list[str]:
        """Root-namespace links of this layout: bridges, and veth ends not yet moved."""
        mine = re.compile(rf"sqb{self.layout.tag}[a-z]")
        return [link for link in list_links() if mine.match(link)]

    @contextmanager
    def entered(self, index: int) -> Iterator[None]:
        """The calling thread inside validator `index`'s namespace."""
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(Path("/run/netns") / self.layout.namespace(index), os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(original)
        finally:
            os.close(target)
            os.close(original)

    def run_inside(self, index: int, action: Callable[[], T]) -> T:
        """Run `action` on the spawner thread (`parent_death.on_spawner_thread`), inside
        namespace `index` while it runs: processes it starts live in that namespace;
        the calling thread's namespace never changes, the spawner's is restored."""

        def inside() -> T:
            with self.entered(index):
                return action()

        return parent_death.on_spawner_thread(inside)


def wan_homes_writer(
    layout: WanLayout,
) -> Callable[[Path, Manifest, int, str], list[NodeSpec]]:
    """A testnet homes writer whose validators listen for peers on their p2p
    address and serve their API on their API address.

    It writes the usual homes (`write_validator_homes`: keys, markets, funded
    accounts, admin tokens), then moves each validator to its namespace's
    addresses: the genesis's hosts, and each home's config and genesis copy
    (`init_home` with force, same key, data/ untouched)."""

    def write(directory: Path, manifest: Manifest, base_port: int, host: str) -> list[NodeSpec]:
        from sequencer_net.home.genesis import load_genesis, write_genesis
        from sequencer_net.home.keystore import read_key_file
        from sequencer_net.home.setup import KEY_FILE, init_home
        from sequencer_net.testnet.network import (
            ADMIN_TOKEN_FILE,
            GENESIS_FILE,
            testnet_oracle,
            write_validator_homes,
        )

        specs = write_validator_homes(directory, manifest, base_port, host)
        genesis_path = directory / GENESIS_FILE
        genesis = load_genesis(genesis_path)
        validators = tuple(
            replace(v, p2p_host=layout.p2p_ip(i), api_host=layout.api_ip(i))
            for i, v in enumerate(genesis.validators)
        )
        genesis = replace(genesis, validators=validators)
        write_genesis(genesis_path, genesis)
        moved = []
        for spec, validator in zip(specs, genesis.validators, strict=True):
            init_home(
                spec.home,
                name=validator.name,
                genesis_file=genesis_path,
                secret=read_key_file(spec.home / KEY_FILE),
                p2p_port=validator.p2p_port,
                api_port=validator.api_port,
                listen_host=validator.p2p_host,
                api_host=validator.api_host,
                admin_token_file=ADMIN_TOKEN_FILE,
                oracle=testnet_oracle(manifest),
                force=True,
            )
            moved.append(replace(spec, api_url=f"http://{validator.api_host}:{validator.api_port}"))
        return moved

    return write
