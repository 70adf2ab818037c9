"""Reproducer for issue 13's "stalled HTTP uploads pin memory" (not a pytest test).

Opens CONNECTIONS connections to a node's API, each declaring DECLARED body
bytes and sending all but the last byte, holds them for HOLD seconds, then
closes them. Samples the RSS of PID (the node process) before, during and
after, and prints one JSON line with the numbers and what the server answered.

    python tests/api/stalled_upload_attack.py --port 26700 --pid 12345 \
        --path /v1/transactions --connections 40 --declared 8388608 --hold 20

Talks only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 64 * 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Upload:
    sock: socket.socket
    sent: int = 0
    answer: bytes = b""
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


def upload(port: int, path: str, declared: int, hold_until: float, result: Upload) -> None:
    """Send the headers and declared - 1 body bytes; then wait for an answer or the end."""
    sock = result.sock
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
        ).encode()
        sock.sendall(head)
        chunk = b"\x00" * CHUNK
        while result.sent < declared - 1 and time.monotonic() < hold_until:
            n = min(CHUNK, declared - 1 - result.sent)
            sock.sendall(chunk[:n])
            result.sent += n
        sock.settimeout(max(0.1, hold_until - time.monotonic()))
        result.answer = sock.recv(4096)
    except OSError as exc:
        result.error = type(exc).__name__
        try:  # the server may have answered before it closed
            sock.settimeout(0.2)
            result.answer = result.answer or sock.recv(4096)
        except OSError:
            pass
    finally:
        result.done.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the node process to measure")
    parser.add_argument("--path", default="/v1/transactions")
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument("--declared", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--hold", type=float, default=20.0, help="seconds to hold the uploads")
    args = parser.parse_args()

    before = rss_mib(args.pid)
    start = time.monotonic()
    hold_until = start + args.hold
    uploads = []
    for _ in range(args.connections):
        sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.hold)
        uploads.append(Upload(sock))
    threads = [
        threading.Thread(
            target=upload, args=(args.port, args.path, args.declared, hold_until, u), daemon=True
        )
        for u in uploads
    ]
    for thread in threads:
        thread.start()
    peak = before
    while time.monotonic() < hold_until:
        peak = max(peak, rss_mib(args.pid))
        time.sleep(0.1)
    for u in uploads:
        u.sock.close()
    for thread in threads:
        thread.join(timeout=5)
    time.sleep(2.0)
    after = rss_mib(args.pid)
    statuses: dict[str, int] = {}
    for u in uploads:
        line = u.answer.split(b"\r\n", 1)[0].decode("latin-1") or f"no answer ({u.error})"
        statuses[line] = statuses.get(line, 0) + 1
    print(
        json.dumps(
            {
                "path": args.path,
                "connections": args.connections,
                "declared_bytes": args.declared,
                "body_bytes_sent_total": sum(u.sent for u in uploads),
                "rss_before_mib": round(before, 1),
                "rss_peak_mib": round(peak, 1),
                "rss_after_close_mib": round(after, 1),
                "answers": statuses,
            }
        )
    )


if __name__ == "__main__":
    main()
