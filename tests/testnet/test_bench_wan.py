"""`--wan-delay-ms`: the prerequisites' messages, and (as root with iproute2)
real namespaces and bridges that are created, carry traffic and are removed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from sequencer_net.testnet.bench.wan import (
    WanLayout,
    WanNetwork,
    WanUnavailable,
    check_prerequisites,
    list_links,
    list_namespaces,
    probe_netem,
)

HAVE_NETNS = os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("tc") is not None
needs_netns = pytest.mark.skipif(
    not HAVE_NETNS, reason="needs root and iproute2 (`ip`, `tc`): apt-get install iproute2"
)


def test_without_root_the_message_says_so() -> None:
    with pytest.raises(WanUnavailable, match="root"):
        check_prerequisites(euid=1000, which=lambda tool: f"/usr/sbin/{tool}")


def test_without_iproute2_the_message_says_how_to_install_it() -> None:
    with pytest.raises(WanUnavailable, match="apt-get install iproute2") as caught:
        check_prerequisites(euid=0, which=lambda tool: None)
    assert "`ip` and `tc`" in str(caught.value)


def test_with_everything_nothing_is_raised() -> None:
    check_prerequisites(euid=0, which=lambda tool: f"/usr/sbin/{tool}")


def ours(tag: int) -> tuple[list[str], list[str]]:
    namespaces = [ns for ns in list_namespaces() if ns.startswith(f"seqbench-{tag}-")]
    links = [link for link in list_links() if link.startswith(f"sqb{tag}")]
    return namespaces, links


@needs_netns
def test_namespaces_carry_api_traffic_and_are_removed() -> None:
    tag = 900_000 + os.getpid() % 90_000
    wan = WanNetwork(WanLayout(validators=2, delay_ms=0, tag=tag))
    server: subprocess.Popen[bytes] | None = None
    try:
        wan.create()
        namespaces, links = ours(tag)
        assert sorted(namespaces) == [f"seqbench-{tag}-0", f"seqbench-{tag}-1"]
        assert f"sqb{tag}p" in links and f"sqb{tag}a" in links
        address = wan.layout.api_ip(1)
        command = [sys.executable, "-m", "http.server", "--bind", address, "28123"]

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        server = wan.run_inside(1, start)
        # The server lives in namespace 1; this process, in the root namespace,
        # reaches it over the API bridge. A freshly made namespace may refuse the
        # bind for a moment (its address not usable yet): start the server again
        # then, a bounded number of times, and show why it exited if it never runs.
        answer = None
        exits: list[str] = []
        for _ in range(50):
            try:
                answer = httpx.get(f"http://{address}:28123/", timeout=1.0)
                break
            except httpx.HTTPError:
                if server.poll() is not None:
                    assert server.stderr is not None
                    exits.append(server.stderr.read().decode(errors="replace")[-300:])
                    assert len(exits) <= 5, exits
                    server = wan.run_inside(1, start)
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200, exits
        # Not reachable on the root namespace's loopback: it is really elsewhere.
        with pytest.raises(httpx.HTTPError):
            httpx.get("http://127.0.0.1:28123/", timeout=1.0)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        left = wan.destroy()
    assert left == []
    assert ours(tag) == ([], [])


@needs_netns
def test_delay_needs_netem_and_a_failure_leaves_nothing_behind() -> None:
    tag = 800_000 + os.getpid() % 90_000
    wan = WanNetwork(WanLayout(validators=2, delay_ms=5, tag=tag))
    try:
        probe_netem(tag)
    except WanUnavailable as exc:
        assert "netem" in str(exc)
        with pytest.raises(WanUnavailable, match="netem"):
            wan.create()  # fails at the first namespace's delay, cleans up
    else:
        wan.create()
        try:
            shown = subprocess.run(
                ["ip", "netns", "exec", wan.layout.namespace(0), "tc", "qdisc", "show"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "netem" in shown and "delay 5ms" in shown
        finally:
            assert wan.destroy() == []
    assert ours(tag) == ([], [])
    assert not [ns for ns in list_namespaces() if ns == f"seqbench-probe-{tag}"]
