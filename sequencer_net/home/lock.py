"""An exclusive lock on a node's home directory.

py-libp2p lets a second process with the same key and port start without
error, so two nodes could sign with one key (a double-sign waiting to
happen) and write one store. `HomeLock` takes `flock(LOCK_EX | LOCK_NB)` on
`<home>/LOCK` for the node's lifetime; a second opener, in this process or
another, gets `HomeLocked` at once instead of waiting. The kernel drops the
lock when the holder exits, even on kill -9, so a stale LOCK file never blocks
a restart. The file holds the holder's pid, for the error message only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_FILE_NAME = "LOCK"


class HomeLocked(RuntimeError):
    """Another process (or another opener) holds the node's home directory."""


class HomeLock:
    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self.path = self.home / LOCK_FILE_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            raise HomeLocked(f"{self.home} is already locked by this HomeLock")
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise HomeLocked(
                f"node home {self.home} is in use by another seqnet process{holder}; "
                "stop it first (two nodes on one home would share a key and a store)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the flock

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> HomeLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""
