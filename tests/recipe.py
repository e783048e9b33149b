"""The seeded weights recipe of the reference fixtures (see ``tests/data/REFERENCE.md``).

Weights drawn this way stand in for ``mobile_sam.pt``, which cannot be fetched
here: the reference outputs were computed by the official code on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"

NORMAL_1_PREFIXES = (
    "prompt_encoder.point_embeddings.",
    "prompt_encoder.not_a_point_embed.",
    "prompt_encoder.no_mask_embed.",
    "mask_decoder.iou_token.",
    "mask_decoder.mask_tokens.",
)


def reference_shapes() -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype name) of the official checkpoint."""
    shapes = {}
    for line in (DATA / "state_dict_shapes.tsv").read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        shapes[key] = (dims, dtype)
    return shapes


def _draw_common(rng: np.random.Generator, key: str, shape: tuple[int, ...]):
    """The rules both recipes share, tried in order: counters, biases, other 1-D tensors, the rest by fan-in."""
    import torch

    name = key.rsplit(".", 1)[-1]
    if name == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.int64)  # nothing drawn
    if name == "bias":
        values = rng.normal(0.0, 0.05, shape)
    elif len(shape) == 1:
        values = rng.normal(1.0, 0.1, shape)
    else:
        values = rng.normal(0.0, 1.0 / np.sqrt(int(np.prod(shape[1:]))), shape)
    return torch.from_numpy(np.asarray(values, dtype=np.float64).astype(np.float32))


def recipe_state_dict(seed: int = 0) -> dict:
    """A state dict with every official key, drawn by the recipe with ``seed``."""
    import torch

    rng = np.random.default_rng(seed)
    state = {}
    for key, (shape, _dtype) in sorted(reference_shapes().items()):
        name = key.rsplit(".", 1)[-1]
        # SAM's own rules first; none of them can apply to a bias or a counter, so the shared order holds.
        if name == "running_var":
            values = rng.uniform(0.5, 2.0, shape)
        elif name == "running_mean":
            values = rng.normal(0.0, 0.2, shape)
        elif name in ("attention_biases", "positional_encoding_gaussian_matrix") or key.startswith(NORMAL_1_PREFIXES):
            values = rng.normal(0.0, 1.0, shape)
        else:
            state[key] = _draw_common(rng, key, shape)
            continue
        state[key] = torch.from_numpy(np.asarray(values, dtype=np.float64).astype(np.float32))
    return state


def decoder_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of micro-sam's instance decoder file (bilinear kind, 66 keys)."""
    shapes = {}
    for line in (DATA / "decoder_shapes.tsv").read_text().splitlines()[1:]:
        key, shape = (line.split("\t") + [""])[:2]
        shapes[key] = tuple(int(d) for d in shape.split("x")) if shape else ()
    return shapes


def recipe_decoder_state_dict(seed: int = 0) -> dict:
    """The instance decoder's state dict drawn by the AIS recipe with ``seed`` (REFERENCE.md, section AIS)."""
    rng = np.random.default_rng(seed)
    return {key: _draw_common(rng, key, shape) for key, shape in sorted(decoder_shapes().items())}


def save_recipe_weights(folder, seed: int = 0) -> Path:
    """Write the recipe state dict as ``folder/recipe_seed<seed>.pt`` (a checkpoint file, as users have)."""
    import torch

    path = Path(folder) / f"recipe_seed{seed}.pt"
    torch.save(recipe_state_dict(seed), path)
    return path
