"""The malloc tuning applies once on glibc and can be switched off."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = "from napari_mobilesam.allocator import keep_freed_memory; print(keep_freed_memory(), keep_freed_memory())"


def run(env_value: str | None) -> str:
    import os

    env = dict(os.environ)
    env.pop("NAPARI_MOBILESAM_MALLOC_TUNING", None)
    if env_value is not None:
        env["NAPARI_MOBILESAM_MALLOC_TUNING"] = env_value
    return subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_applied_once_on_linux():
    assert run(None) == "True True"


def test_can_be_switched_off():
    assert run("0") == "False False"
