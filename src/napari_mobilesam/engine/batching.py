"""How many slices the encoder takes in one forward pass, from the device, its memory and the precision.

A batch pays where one image leaves the device idle between kernels (a GPU:
one 1024 x 1024 image is a few milliseconds of many small launches) and
costs nothing in results (each slice is preprocessed and padded on its own;
embeddings equal one-at-a-time ones up to float rounding). On a CPU one
image already fills the cores, and a batch only adds memory: 1, unless
``NAPARI_MOBILESAM_ENCODE_BATCH`` says otherwise (measured in
``docs/benchmarks.md``, "Precision and batches").
"""

from __future__ import annotations

import os

from ..errors import MobileSAMError

BATCH_ENV = "NAPARI_MOBILESAM_ENCODE_BATCH"
MAX_GPU_BATCH = 32
# The encoder's peak working memory per 1024 x 1024 slice (activations of the
# first stage and one stage-1 MLP at a time), with room to spare; halved in 16-bit.
SLICE_BYTES_FLOAT32 = 400 << 20
GPU_MEMORY_SHARE = 0.5  # of the free memory: the decoder and other programs need the rest


def encode_batch_size(device, precision: str = "float32", free_bytes: int | None = None) -> int:
    """Slices per encoder forward on ``device`` (``torch.device`` or its name) in ``precision``.

    ``NAPARI_MOBILESAM_ENCODE_BATCH`` (a whole number >= 1) overrides the choice.
    On CUDA: as many as half the free memory holds (``free_bytes``, default
    ``torch.cuda.mem_get_info``), at most :data:`MAX_GPU_BATCH`; elsewhere
    (CPU, MPS: not measured to pay) 1.
    """
    from_env = os.environ.get(BATCH_ENV, "").strip()
    if from_env:
        try:
            value = int(from_env)
        except ValueError:
            value = 0
        if value < 1:
            raise MobileSAMError(f"{BATCH_ENV}={from_env!r} is not a batch size; set a whole number >= 1 or unset it.")
        return value
    kind = str(getattr(device, "type", device)).split(":")[0]
    if kind != "cuda":
        return 1
    if free_bytes is None:
        import torch

        free_bytes, _total = torch.cuda.mem_get_info(device)
    per_slice = SLICE_BYTES_FLOAT32 if precision == "float32" else SLICE_BYTES_FLOAT32 // 2
    return int(max(1, min(MAX_GPU_BATCH, free_bytes * GPU_MEMORY_SHARE // per_slice)))
