"""The malloc tuning applies once on glibc and can be switched off."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = "from napari_mobilesam.engine.malloc_tuning import keep_freed_memory; print(keep_freed_memory(), keep_freed_memory())"


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


HUGE_PAGES = (
    "from napari_mobilesam.engine.malloc_tuning import keep_freed_memory; keep_freed_memory(); import torch; "
    "x = torch.ones(8 << 20); "
    "print(sum(int(line.split()[1]) for line in open('/proc/self/smaps_rollup') if line.startswith('AnonHugePages')))"
)


def _thp_mode() -> str:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return "none"
    return text[text.index("[") + 1 : text.index("]")]


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or _thp_mode() not in ("madvise", "always"), reason="no transparent huge pages"
)
def test_large_tensors_get_huge_pages():
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("NAPARI_MOBILESAM_MALLOC_TUNING", "THP_MEM_ALLOC_ENABLE")}
    out = subprocess.run([sys.executable, "-c", HUGE_PAGES], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) >= 16 << 10  # kB: most of the 32 MB tensor
