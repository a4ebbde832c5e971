"""One run per output folder: a lock file that a second run respects and a dead run's
successor takes over.

``os.open`` with ``O_CREAT | O_EXCL`` is atomic on local and NFSv3+ file systems, so two
runs cannot both create the lock. A run killed with SIGKILL leaves its lock behind; the
next run sees that its process is gone and takes the folder over.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ..errors import OutputLockedError

LOCK_NAME = ".immunoprofile.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class OutputLock:
    """Context manager holding ``OUT/.immunoprofile.lock`` while a run writes there.

    Parameters
    ----------
    out_dir : str or Path
        The output folder (created if absent).

    Raises
    ------
    OutputLockedError
        On entry, when a live run on this host holds the folder.
    """

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / LOCK_NAME
        self.took_over: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, owner = self._holder()
                if pid is not None and (owner != host or _alive(pid)):
                    where = f"pid {pid}" + (f" on {owner}" if owner != host else "")
                    raise OutputLockedError(
                        f"{self.path.parent}: another immunoprofile run ({where}) is writing "
                        "to this folder — wait for it to finish or choose another folder "
                        f"(if it is gone, delete {self.path.name})") from None
                self.took_over = pid  # the holder died: take the folder over
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{os.getpid()}\n{host}\n{time.time():.0f}\n")
            return self
        raise OutputLockedError(f"{self.path.parent}: could not take the output lock")

    def _holder(self) -> tuple[int | None, str]:
        try:
            lines = self.path.read_text().split("\n")
            return int(lines[0]), lines[1] if len(lines) > 1 else ""
        except (OSError, ValueError, IndexError):
            return None, ""

    def __exit__(self, *exc) -> None:
        pid, _ = self._holder()
        if pid == os.getpid():
            self.path.unlink(missing_ok=True)
