"""Sample data for File › Open Sample › napari-mobilesam (no download).

- ``nuclei_2d``: a 512x512 uint16 image of nuclei from StarDist's example data
  (BSD-3-Clause, see ``data/LICENSE-stardist.txt``), shipped with the package;
- ``nuclei_3d``: a ``(z, y, x)`` stack of nuclei-like blobs made procedurally
  (seeded: the same stack every time).
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np

CREDIT = "StarDist example data (Uwe Schmidt, Martin Weigert; BSD-3-Clause)"


def nuclei_2d() -> list[tuple]:
    """``[(image (512, 512) uint16, layer kwargs)]``."""
    import tifffile  # a dependency of scikit-image

    path = files("napari_mobilesam") / "data" / "nuclei2d.tif"
    with path.open("rb") as file:
        image = tifffile.imread(file)
    return [(image, {"name": "nuclei 2D", "metadata": {"credit": CREDIT}})]


def synthetic_nuclei(
    shape: tuple[int, int, int] = (32, 256, 256), n_nuclei: int = 40, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A ``(z, y, x)`` uint16 stack of textured ellipsoidal nuclei with blur and noise, and its ``uint16`` labels."""
    rng = np.random.default_rng(seed)
    depth, height, width = shape
    z, y, x = np.ogrid[:depth, :height, :width]
    intensity = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    for label in range(1, n_nuclei + 1):
        radii = rng.uniform([3.0, 8.0, 8.0], [6.0, 16.0, 16.0])
        centre = rng.uniform(radii, np.asarray(shape) - radii)
        inside = (
            ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2
        ) <= 1.0
        inside &= labels == 0
        labels[inside] = label
        intensity[inside] = rng.uniform(0.5, 1.0)
    texture = rng.normal(1.0, 0.15, size=shape).astype(np.float32)
    intensity = _blur(intensity * texture, sigma=1.5)
    intensity += rng.normal(0.05, 0.03, size=shape).astype(np.float32)
    image = np.clip(intensity * 3000 + 200, 0, 65535).astype(np.uint16)
    return image, labels


def _blur(volume: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter  # scipy comes with scikit-image

    return gaussian_filter(volume, sigma=(sigma / 2, sigma, sigma))


def nuclei_3d() -> list[tuple]:
    """``[(stack (32, 256, 256) uint16, layer kwargs)]``, z spacing twice the pixel size."""
    image, _ = synthetic_nuclei()
    return [(image, {"name": "nuclei 3D (synthetic)", "scale": (2.0, 1.0, 1.0)})]
