"""The npe2 manifest: valid, discoverable without torch or Qt, with the widget, menu entry and sample data."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest


@pytest.fixture(scope="module")
def manifest():
    from npe2 import PluginManifest

    return PluginManifest.from_distribution("napari-mobilesam")


def test_manifest_is_valid_and_named(manifest):
    from npe2 import PluginManifest

    path = files("napari_mobilesam") / "napari.yaml"
    PluginManifest.from_file(str(path)).validate_imports()  # every python_name resolves
    assert manifest.name == "napari-mobilesam"
    assert [w.display_name for w in manifest.contributions.widgets] == ["MobileSAM"]


def test_widget_in_layers_segment_menu(manifest):
    entries = manifest.contributions.menus["napari/layers/segment"]
    widget_command = manifest.contributions.widgets[0].command
    assert [entry.command for entry in entries] == [widget_command, "napari-mobilesam.segment_stack"]


def test_sample_data_needs_no_download(manifest):
    from napari_mobilesam import _sample_data

    keys = {sample.key for sample in manifest.contributions.sample_data}
    assert keys == {"nuclei_2d", "nuclei_3d"}
    [(image2d, meta2d)] = _sample_data.nuclei_2d()
    assert image2d.shape == (512, 512) and image2d.dtype == np.uint16 and "StarDist" in meta2d["metadata"]["credit"]
    [(stack, meta3d)] = _sample_data.nuclei_3d()
    assert stack.ndim == 3 and stack.dtype == np.uint16 and len(meta3d["scale"]) == 3
    assert stack.std() > 0
    np.testing.assert_array_equal(stack, _sample_data.nuclei_3d()[0][0])  # seeded: the same every time


def test_package_data_ships_the_image_and_its_license():
    data = files("napari_mobilesam") / "data"
    assert (data / "nuclei2d.tif").is_file()
    assert "BSD" in (data / "LICENSE-stardist.txt").read_text()


def test_discovery_imports_neither_torch_nor_qt():
    code = (
        "import sys\n"
        "from npe2 import PluginManager\n"
        "pm = PluginManager()\n"
        "pm.discover()\n"
        "manifest = pm.get_manifest('napari-mobilesam')\n"
        "assert manifest.contributions.widgets\n"
        "import napari_mobilesam\n"
        "heavy = sorted(m for m in ('torch', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari') if m in sys.modules)\n"
        "print(heavy)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
