"""On a CUDA machine: the model on the GPU gives the CPU's results (skipped where there is no GPU).

Run on a GPU machine with ``pytest tests/gpu``. The decoder's low-rank path and
its image-token path, mask prompts, a click and segment-everything are compared
with the CPU on the recipe weights and the nuclei fixture's embedding. A few
mask pixels whose logits sit within ~1e-5 of zero may flip; the thresholds
below leave room for that and nothing more. GPU timings are
``benchmarks/gpu_throughput.py``'s.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_mobilesam import ImageEmbedding, Predictor, segment_everything
from napari_mobilesam.engine.prompts import check_prompts
from napari_mobilesam.segment.everything import point_grid
from recipe import DATA

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
LOGITS_ATOL = 5e-5  # observed 6e-6 on an H200


@pytest.fixture(scope="module")
def nuclei():
    return np.load(DATA / "nuclei.npz")


@pytest.fixture(scope="module")
def predictors(recipe_model, nuclei):
    import copy

    embedding = ImageEmbedding(nuclei["embedding"], (512, 512), (1024, 1024))
    found = {"cpu": Predictor(recipe_model), "cuda": Predictor(copy.deepcopy(recipe_model).to("cuda"))}
    for predictor in found.values():
        predictor.set_embedding(embedding)
    return found


def _grid_prompts(count=256, masks=None):
    grid = point_grid(16)[:count] * 512
    return check_prompts(grid[:, None], np.ones((len(grid), 1), int), None, masks, (512, 512))


def test_grid_prompts_low_res_logits_and_iou(predictors):
    prompts = _grid_prompts()
    cpu, cuda = (predictors[d].decode_low_res(prompts, True) for d in ("cpu", "cuda"))
    torch.testing.assert_close(cuda[0].cpu(), cpu[0], atol=LOGITS_ATOL, rtol=0)
    torch.testing.assert_close(cuda[1].cpu(), cpu[1], atol=LOGITS_ATOL, rtol=0)
    flipped = int(((cpu[0] > 0) != (cuda[0].cpu() > 0)).sum())
    assert flipped <= 1e-5 * cpu[0].numel()


def test_the_same_prompts_are_skipped_below_min_iou(predictors):
    prompts = _grid_prompts()
    best = predictors["cpu"].decode_low_res(prompts, True)[1].max(1).values.sort().values
    gaps = best.diff()
    middle = len(best) // 2
    at = int(gaps[middle - 10 : middle + 10].argmax()) + middle - 10  # a threshold far from every IoU
    threshold = float(best[at] + best[at + 1]) / 2
    cpu, cuda = (predictors[d].decode_low_res(prompts, True, min_iou=threshold)[0].cpu() for d in ("cpu", "cuda"))
    assert torch.equal(torch.isinf(cpu), torch.isinf(cuda))
    kept = torch.isfinite(cpu)
    torch.testing.assert_close(cuda[kept], cpu[kept], atol=LOGITS_ATOL, rtol=0)


def test_mask_prompts(predictors):
    feedback = predictors["cpu"].decode_low_res(_grid_prompts(6), True)[0][:, :1].numpy()
    prompts = _grid_prompts(6, feedback)
    cpu, cuda = (predictors[d].decode_low_res(prompts, False) for d in ("cpu", "cuda"))
    torch.testing.assert_close(cuda[0].cpu(), cpu[0], atol=LOGITS_ATOL, rtol=0)


def test_image_token_path_without_tf32(recipe_model, predictors, nuclei):
    """``MaskDecoder.forward`` with a few prompts and masks; cuDNN's TF32 off (on, the mask's convs differ ~1e-3)."""
    grid = point_grid(16)[:4] * 1024
    masks = predictors["cpu"].decode_low_res(_grid_prompts(4), True)[0][:, :1]
    out = {}
    previous, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False
    try:
        for device, predictor in predictors.items():
            model = predictor.model
            with torch.inference_mode():
                coords = torch.as_tensor(grid[:, None], dtype=torch.float32, device=device)
                labels = torch.ones((4, 1), dtype=torch.int64, device=device)
                sparse, dense = model.prompt_encoder((coords, labels), None, masks.to(device))
                features = torch.as_tensor(nuclei["embedding"], device=device)[None]
                logits, iou = model.mask_decoder(features, model.prompt_encoder.get_dense_pe(), sparse, dense, True)
            out[device] = (logits.cpu(), iou.cpu())
    finally:
        torch.backends.cudnn.allow_tf32 = previous
    torch.testing.assert_close(out["cuda"][0], out["cpu"][0], atol=LOGITS_ATOL, rtol=0)
    torch.testing.assert_close(out["cuda"][1], out["cpu"][1], atol=LOGITS_ATOL, rtol=0)


def test_a_click(predictors):
    click = (np.array([[200.0, 300.0]]), np.array([1]))
    cpu, cuda = (predictors[d].predict(*click, return_logits=True)[0] for d in ("cpu", "cuda"))
    np.testing.assert_allclose(cuda, cpu, atol=LOGITS_ATOL, rtol=0)


def test_segment_everything_from_the_image(predictors, nuclei):
    settings = {"sampler": "grid", "points_per_side": 16, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    cpu, cuda = (segment_everything(nuclei["image"], predictors[d].model, **settings) for d in ("cpu", "cuda"))
    assert (cpu != cuda).mean() < 1e-3  # observed 58 of 262,144 pixels: logits within ~1e-5 of zero


def test_instance_maps(nuclei):
    """micro-sam's decoder maps on CUDA (the module's forward) within 1e-4 of the CPU's (the restructured one)."""
    from napari_mobilesam.model.instance_decoder import InstanceDecoder
    from napari_mobilesam.segment.instance_maps import instance_maps
    from recipe import recipe_decoder_state_dict

    decoder = InstanceDecoder()
    decoder.load_state_dict(recipe_decoder_state_dict(0))
    embedding = ImageEmbedding(nuclei["embedding"], (512, 512), (1024, 1024))
    cpu = instance_maps(embedding, decoder.eval())
    cuda = instance_maps(embedding, decoder.to("cuda"))
    np.testing.assert_allclose(cuda, cpu, atol=1e-4, rtol=0)
