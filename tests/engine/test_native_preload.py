import subprocess
import sys

import pytest

SCRIPT = """
import sys
from napari_mobilesam.engine.native_preload import LIBRARY, preload_torch_library
assert "torch" not in sys.modules
loaded = preload_torch_library()
mapped = any(LIBRARY in line for line in open("/proc/self/maps"))
import torch
print(loaded, mapped, float(torch.ones(3).sum()), preload_torch_library())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload is for Linux (glibc)")
def test_torchs_library_is_loaded_before_the_import_which_then_works():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=True)
    # Loaded by the preload, mapped before torch's import, torch works, and a second call does nothing.
    assert out.stdout.split() == ["True", "True", "3.0", "False"]
