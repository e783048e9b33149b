"""On a CUDA machine: the decoder on the GPU against the CPU, and GPU timings (prints JSON).

Not a test (CI has no GPU). Run from the repo root: ``python benchmarks/gpu_check.py``.
Needs only torch, numpy, scipy and scikit-image besides this checkout (it
imports the package from ``src/``), so it runs on a bare GPU machine.
Checks: low-res logits and IoU of 256 grid prompts (3 masks each) on CUDA
against CPU, the ``min_iou`` skip pattern, mask prompts, the image-token path
(``MaskDecoder.forward`` with few prompts), one click through ``predict`` and
segment-everything labels; times the encoder, a decode per prompt (with and
without the mask head) and a click on the low-rank path and on image tokens,
and a default grid segment-everything of the 512x512 nuclei image.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _median_ms(call, repeat: int = 5) -> float:
    """Median wall time of ``call`` in ms over ``repeat`` calls, after two warm-up calls."""
    times = []
    for _ in range(repeat + 2):
        torch.cuda.synchronize()
        t = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times[2:]))


def main() -> None:
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
    from napari_mobilesam import ImageEmbedding, Predictor
    from napari_mobilesam.engine.prompts import check_prompts
    from napari_mobilesam.model import build_mobile_sam
    from napari_mobilesam.segment.everything import point_grid, segment_everything
    from recipe import recipe_state_dict

    out = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
    ref = np.load(ROOT / "tests" / "data" / "nuclei.npz")
    emb = ImageEmbedding(ref["embedding"], (512, 512), (1024, 1024))
    models = {}
    for dev in ("cpu", "cuda"):
        m = build_mobile_sam()
        m.load_state_dict(recipe_state_dict(0), strict=True)
        models[dev] = m.eval().to(dev)
    preds = {d: Predictor(m) for d, m in models.items()}
    for p in preds.values():
        p.set_embedding(emb)
    grid = point_grid(16) * 512
    prompts = check_prompts(grid[:, None], np.ones((len(grid), 1), int), None, None, (512, 512))
    res = {}
    for d, p in preds.items():
        full, iou = p.decode_low_res(prompts, True)
        res[d] = [full.cpu(), iou.cpu()]
    # one threshold for both devices, in the widest gap between the CPU's best IoUs around their median
    best = res["cpu"][1].max(1).values.sort().values
    mid = len(best) // 2
    gap = int((best[mid - 10 : mid + 10].diff()).argmax()) + mid - 10
    thr = float(best[gap] + best[gap + 1]) / 2
    for d, p in preds.items():
        skip, iou2 = p.decode_low_res(prompts, True, min_iou=thr)
        res[d] += [skip.cpu(), iou2.cpu(), thr]
    f0, i0, s0, j0, t0 = res["cpu"]
    f1, i1, s1, j1, t1 = res["cuda"]
    fin = torch.isfinite(s0) & torch.isfinite(s1)
    out["full_logits_maxdiff"] = float((f0 - f1).abs().max())
    out["iou_maxdiff"] = float((i0 - i1).abs().max())
    out["skip_same_pattern"] = bool(torch.equal(torch.isinf(s0), torch.isinf(s1)))
    out["skip_threshold_margin"] = float(best[gap + 1] - best[gap]) / 2
    out["skip_logits_maxdiff"] = float((s0[fin] - s1[fin]).abs().max()) if fin.any() else None
    out["mask_pixels_differ_full"] = int(((f0 > 0) != (f1 > 0)).sum())
    # mask prompts (the previous low-res mask fed back): the low-rank image side, batched and alone
    feedback = f0[:6, :1].numpy()  # (6, 1, 256, 256) logits from the CPU run
    refine = check_prompts(grid[:6, None], np.ones((6, 1), int), None, feedback, (512, 512))
    masked = {d: [t.cpu() for t in p.decode_low_res(refine, False)] for d, p in preds.items()}
    out["mask_prompt_logits_maxdiff"] = float((masked["cpu"][0] - masked["cuda"][0]).abs().max())
    out["mask_prompt_iou_maxdiff"] = float((masked["cpu"][1] - masked["cuda"][1]).abs().max())
    # the image-token path (MaskDecoder.forward, few prompts: no low-rank share), with a mask prompt
    # (cuDNN's convolutions use TF32 by default, as for the official code: the mask's downscaling differs ~1e-3)
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = tf32
        tok = {}
        for d, m in models.items():
            dev = torch.device(d)
            with torch.inference_mode():
                coords = torch.as_tensor(grid[:4, None] * 2, dtype=torch.float32, device=dev)
                labels = torch.ones((4, 1), dtype=torch.int64, device=dev)
                sparse, dense = m.prompt_encoder((coords, labels), None, f0[:4, :1].to(dev))
                feats = torch.as_tensor(emb.features, device=dev)[None]
                lo, io = m.mask_decoder(feats, m.prompt_encoder.get_dense_pe(), sparse, dense, True)
            tok[d] = (lo.cpu(), io.cpu())
        name = "image_token_path" + ("" if tf32 else "_no_tf32")
        out[f"{name}_logits_maxdiff"] = float((tok["cpu"][0] - tok["cuda"][0]).abs().max())
        out[f"{name}_iou_maxdiff"] = float((tok["cpu"][1] - tok["cuda"][1]).abs().max())
    torch.backends.cudnn.allow_tf32 = True
    # one click through predict (the benchmark's call), both devices
    click = (np.array([[200.0, 300.0]]), np.array([1]))
    clicked = {d: p.predict(*click, return_logits=True) for d, p in preds.items()}
    out["click_logits_maxdiff"] = float(np.abs(clicked["cpu"][0] - clicked["cuda"][0]).max())
    # end to end from the image, with encoding
    img = ref["image"]
    lab = {}
    for d, m in models.items():
        lab[d] = segment_everything(
            img, m, sampler="grid", points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0
        )
    out["everything_labels_equal"] = bool(np.array_equal(lab["cpu"], lab["cuda"]))
    out["everything_label_pixels_differ"] = int((lab["cpu"] != lab["cuda"]).sum())
    # timings on the GPU
    p = preds["cuda"]
    m = models["cuda"]
    x = torch.randn(1, 3, 1024, 1024, device="cuda")
    with torch.inference_mode():
        for _ in range(3):
            m.image_encoder(x)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            m.image_encoder(x)
        torch.cuda.synchronize()
        out["gpu_encoder_ms"] = (time.perf_counter() - t) / 10 * 1000
    big = check_prompts(np.tile(grid[:, None], (4, 1, 1)), np.ones((4 * len(grid), 1), int), None, None, (512, 512))
    low_rank = p._image_context()
    dense = m.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    with torch.inference_mode():
        tokens = m.mask_decoder.prepare(p.features, p._image_pe(), dense, low_rank=False)
    # the low-rank path (what predict uses) and the image-token path on the same prompts
    for path, context in (("", low_rank), ("_image_tokens", tokens)):
        p._context[False] = context
        for name, kw in (("full", {}), ("skip", {"min_iou": 1.0})):
            ms = _median_ms(lambda kw=kw: p.decode_low_res(big, True, **kw))
            out[f"gpu_decode_{name}{path}_ms_per_prompt"] = ms / big.count
        out[f"gpu_click{path}_ms"] = _median_ms(lambda: p.predict(*click), repeat=50)
    p._context[False] = low_rank
    t = time.perf_counter()
    segment_everything(img, m, sampler="grid")
    torch.cuda.synchronize()
    out["gpu_everything_grid_s"] = time.perf_counter() - t
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
