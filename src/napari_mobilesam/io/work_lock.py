"""One run at a time per output: a lock file naming the process that writes it.

``<OUTPUT>.partial/lock`` holds ``{"pid", "host", "started"}`` of the run that
works there. It is made with ``O_EXCL`` (exactly one of two runs starting at
once gets it) and removed when the run ends. A run that finds it:

- held by a process still running on this host, or by any process on
  another host (which cannot be checked from here): refuses, naming it;
- held by a process that no longer exists on this host (a run that was
  killed): takes it over, so a killed run can be resumed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import MobileSAMError
from .files import remove_path, temporary_path

LOCK_NAME = "lock"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (when unsure: yes, so nothing is taken from a live run)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return True
    return True


def _alive_windows(pid: int) -> bool:
    # os.kill would terminate the process on Windows; ask for a handle instead.
    try:
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    except Exception:
        return True


def _owner_text() -> bytes:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode()


def write_lock(folder: Path) -> Path:
    """Put this process's lock into ``folder`` (one being built, not yet visible under its real name)."""
    path = folder / LOCK_NAME
    path.write_bytes(_owner_text())
    return path


def read_owner(path: Path) -> dict | None:
    """The ``{"pid", "host", "started"}`` of a lock file, or ``None`` when it is gone or unreadable."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def is_stale(owner: dict | None) -> bool:
    """A lock whose run is gone: its process died on this host (an unreadable lock counts as half-written: not stale)."""
    if owner is None or owner.get("host") != socket.gethostname():
        return False
    try:
        return not _alive(int(owner.get("pid")))
    except (TypeError, ValueError):
        return False


def refusal(folder: Path, owner: dict | None, output: str | os.PathLike) -> MobileSAMError:
    """The error for a run that finds ``folder`` locked by another."""
    lock = folder / LOCK_NAME
    if owner is None:
        who = "another run"
    else:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(owner.get("started", 0))))
        who = f"another run (process {owner.get('pid')} on {owner.get('host')}, started {started})"
    return MobileSAMError(
        f"{who} is writing {output}; wait for it to finish, or choose another output name. If no such run is "
        f"going on any more, delete {lock} and run again."
    )


def take(folder: Path, output) -> Path:
    """Lock the existing work folder ``folder`` for this process: a stale lock is taken over, a live one refused."""
    path = folder / LOCK_NAME
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = read_owner(path)
            if not is_stale(owner):
                raise refusal(folder, owner, output) from None
            # Moved aside, not deleted: of two runs taking over at once, only one rename succeeds.
            aside = temporary_path(path)
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue
            if read_owner(aside) != owner:  # a new run's lock came in between: put it back
                os.replace(aside, path)
                raise refusal(folder, read_owner(path), output) from None
            remove_path(aside)
            continue
        with os.fdopen(descriptor, "wb") as file:
            file.write(_owner_text())
        return path
    raise refusal(folder, read_owner(path), output)


def release(folder: Path) -> None:
    """Remove this process's lock from ``folder`` (another's is left alone)."""
    path = folder / LOCK_NAME
    owner = read_owner(path)
    if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        remove_path(path)
