"""One run per output: the work folder's lock refuses a live run, and a killed run's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from napari_mobilesam.errors import MobileSAMError
from napari_mobilesam.io import work_lock
from napari_mobilesam.io.resume import SliceStore


def dead_pid() -> int:
    """The pid of a process that has ended (reaped, so it no longer exists)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def lock_of(folder, pid, host=None):
    (folder / work_lock.LOCK_NAME).write_text(
        json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": 0.0})
    )


def test_the_work_folder_is_locked_while_its_run_lives(tmp_path):
    output = tmp_path / "labels.tif"
    store = SliceStore.open(output, {}, n_slices=2, plane_shape=(4, 4))
    owner = work_lock.read_owner(store.path / "lock")
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    # Another live process holds it: a second run is refused and changes nothing.
    store.write(0, np.ones((4, 4)))
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            lock_of(store.path, other.pid)
            with pytest.raises(MobileSAMError, match=rf"another run \(process {other.pid} on .*\) is writing .*labels.tif"):
                SliceStore.open(output, {}, n_slices=2, plane_shape=(4, 4))
            with pytest.raises(MobileSAMError, match="wait for it to finish"):
                SliceStore.open(output, {"other": "settings"}, n_slices=2, plane_shape=(4, 4), resume=False)
            assert store.done() == {0}
        finally:
            other.kill()


def test_a_killed_runs_lock_is_taken_over(tmp_path):
    output = tmp_path / "labels.zarr"
    store = SliceStore.open(output, {}, n_slices=2, plane_shape=(4, 4))
    store.write(1, np.ones((4, 4)))
    lock_of(store.path, dead_pid())
    again = SliceStore.open(output, {}, n_slices=2, plane_shape=(4, 4))
    assert again.done() == {1} and work_lock.read_owner(again.path / "lock")["pid"] == os.getpid()
    again.release()
    assert not (again.path / "lock").exists() and again.path.is_dir()  # kept for a later run, unlocked


def test_a_lock_from_another_host_is_refused(tmp_path):
    store = SliceStore.open(tmp_path / "labels.tif", {}, n_slices=1, plane_shape=(4, 4))
    lock_of(store.path, dead_pid(), host="another-host.example")
    with pytest.raises(MobileSAMError, match="another-host.example.*delete .*lock and run again"):
        SliceStore.open(tmp_path / "labels.tif", {}, n_slices=1, plane_shape=(4, 4))


def test_release_leaves_another_runs_lock(tmp_path):
    lock_of(tmp_path, os.getpid() + 1)
    work_lock.release(tmp_path)
    assert (tmp_path / "lock").exists()


def test_take_is_exclusive(tmp_path):
    work_lock.take(tmp_path, "out.tif")
    with pytest.raises(MobileSAMError, match=f"process {os.getpid()}"):
        lock_of(tmp_path, os.getpid())
        work_lock.take(tmp_path, "out.tif")  # a live run (this one) holds it
