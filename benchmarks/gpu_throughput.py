"""On a CUDA machine: encoding throughput by precision and batch, torch.compile, and the click's latency (JSON).

Not a test (CI has no GPU). Run from the repo root, unattended, in well under
8 minutes on one H100::

    python benchmarks/gpu_throughput.py --out gpu_throughput.json

Needs only torch and numpy (plus Pillow, scipy, scikit-image for the
package) besides this checkout (it imports the package from ``src/``), and
the recipe weights (same architecture as ``mobile_sam.pt``, same speed).
Measures, for a stack of ``--slices`` 1024 x 1024 slices:

- ``encode``: the encoder alone on preprocessed slices already on the GPU,
  per precision (float32, bfloat16, float16) and batch size: slices per
  second; and the embeddings' relative error against float32;
- ``embed_many``: what users get: ``Predictor.embed_many`` from uint8
  numpy slices (preprocessing on the CPU, transfer, encoder, embeddings back);
- ``compile``: ``torch.compile`` of the encoder (its compile time, then its
  throughput), for the best eager configuration, skipped when ``--no-compile``;
- ``click``: one click through ``Predictor.predict`` (3 masks, 512 x 512,
  numpy out), and the decode alone eager and replayed from a CUDA graph.

Sections stop being started once ``--budget`` seconds have passed, and each
records its error instead of stopping the run. The functions take the device
and sizes, so the tests run them on the CPU with tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, recipe_model

PRECISIONS = ("float32", "bfloat16", "float16")


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(call, device, repeat: int = 5, warmup: int = 2) -> float:
    """Median seconds of ``call()`` over ``repeat`` calls after ``warmup`` ones."""
    times = []
    for index in range(warmup + repeat):
        sync(device)
        start = time.perf_counter()
        call()
        sync(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def preprocessed(model, count: int, device, seed: int = 0) -> torch.Tensor:
    """``(count, 3, 1024, 1024)`` normalised inputs on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (count, 3, 1024, 1024), generator=generator).float().to(device)
    with torch.inference_mode():
        return model.preprocess(pixels)


def encode_throughput(encoder, inputs: torch.Tensor, batch: int, dtype, device, repeat: int = 3) -> dict:
    """Slices per second of ``encoder`` over ``inputs`` in batches of ``batch`` computing in ``dtype``."""
    kwargs = {} if dtype is None else {"dtype": dtype}

    def run():
        with torch.inference_mode():
            for start in range(0, len(inputs), batch):
                encoder(inputs[start : start + batch], **kwargs)

    seconds = timed(run, device, repeat=repeat, warmup=1)
    return {"batch": batch, "seconds": seconds, "slices_per_s": len(inputs) / seconds}


def relative_error(encoder, inputs: torch.Tensor, dtype) -> float:
    """``|e(dtype) - e(float32)| / |e(float32)|`` over the first two inputs."""
    with torch.inference_mode():
        exact = encoder(inputs[:2])
        reduced = encoder(inputs[:2], dtype=dtype)
    return float((reduced - exact).norm() / exact.norm())


def section_encode(model, inputs, device, batches, precisions=PRECISIONS) -> dict:
    from napari_mobilesam.engine.precision import torch_dtype

    out = {}
    for precision in precisions:
        dtype = None if precision == "float32" else torch_dtype(precision)
        runs = [encode_throughput(model.image_encoder, inputs, batch, dtype, device) for batch in batches]
        out[precision] = {"runs": runs, "best": max(runs, key=lambda r: r["slices_per_s"])}
        if dtype is not None:
            out[precision]["relative_error"] = relative_error(model.image_encoder, inputs, dtype)
    return out


def section_embed_many(model, count: int, precision: str, device, size: int = 1024) -> dict:
    """``Predictor.embed_many`` on ``count`` uint8 slices of ``size`` x ``size``, the device's batch size."""
    from napari_mobilesam import Predictor
    from napari_mobilesam.engine.batching import encode_batch_size

    predictor = Predictor(model, precision=precision)
    rng = np.random.default_rng(1)
    slices = [rng.integers(0, 65535, (size, size), dtype=np.uint16) for _ in range(count)]
    batch = encode_batch_size(predictor.device, predictor.precision)
    seconds = timed(lambda: predictor.embed_many(slices), device, repeat=2, warmup=1)
    return {"precision": precision, "batch": batch, "slices_per_s": count / seconds, "seconds": seconds}


def section_compile(model, inputs, batch: int, dtype, device) -> dict:
    """``torch.compile`` of the encoder: the first call (compile) timed apart, then throughput."""
    compiled = torch.compile(model.image_encoder)
    kwargs = {} if dtype is None else {"dtype": dtype}
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(inputs[:batch], **kwargs)
    sync(device)
    compile_s = time.perf_counter() - start
    run = encode_throughput(compiled, inputs, batch, dtype, device)
    return {"compile_s": compile_s, **run}


class GraphDecode:
    """The decode of one prompt shape captured in a CUDA graph: new prompts are copied into its inputs."""

    def __init__(self, predictor, sparse: torch.Tensor, multimask: bool = True) -> None:
        decoder, context = predictor.model.mask_decoder, predictor._image_context()
        self.sparse = sparse.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm-up outside the graph, as CUDA graphs require
                decoder.decode(context, self.sparse, multimask)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.outputs = decoder.decode(context, self.sparse, multimask)

    def __call__(self, sparse: torch.Tensor):
        self.sparse.copy_(sparse)
        self.graph.replay()
        return self.outputs


def section_click(model, device, graphs: bool) -> dict:
    from napari_mobilesam import ImageEmbedding, Predictor
    from napari_mobilesam.engine.preprocessing import apply_coords

    with np.load(ROOT / "tests" / "data" / "nuclei.npz") as data:
        embedding = ImageEmbedding(data["embedding"], (512, 512), (1024, 1024))
    predictor = Predictor(model)
    predictor.set_embedding(embedding)
    click = (np.array([[200.0, 300.0]]), np.array([1]))
    out = {"click_ms": timed(lambda: predictor.predict(*click), device, repeat=50, warmup=5) * 1e3}
    coords = torch.as_tensor(apply_coords(click[0][None], (512, 512)), dtype=torch.float32, device=device)
    labels = torch.as_tensor(click[1][None], device=device)
    with torch.inference_mode():
        sparse = model.prompt_encoder.embed_sparse((coords, labels), None, None)
    context = predictor._image_context()

    def eager():
        with torch.inference_mode():
            return model.mask_decoder.decode(context, sparse, True)

    out["decode_ms"] = timed(eager, device, repeat=50, warmup=5) * 1e3
    if graphs:
        graph = GraphDecode(predictor, sparse)
        replayed = graph(sparse)
        out["graph_max_diff"] = float((replayed[0] - eager()[0]).abs().max())
        out["graph_decode_ms"] = timed(lambda: graph(sparse), device, repeat=50, warmup=5) * 1e3
    return out


def run(
    device="cuda",
    slices: int = 100,
    batches=(1, 8, 16, 32),
    compile_model: bool = True,
    budget: float = 420,
    precisions=PRECISIONS,
):
    """Every section on ``device``; returns the results (and each section's error, if any)."""
    started = time.perf_counter()
    device = torch.device(device)
    out = {"torch": torch.__version__, "device": str(device), "slices": slices}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    model = recipe_model(device)
    inputs = preprocessed(model, slices, device)
    best = {}

    def section(name, call):
        if time.perf_counter() - started > budget:
            out[name] = {"skipped": f"over the {budget:.0f} s budget"}
            return
        try:
            out[name] = call()
        except Exception as error:  # noqa: BLE001  one failed section must not lose the others
            out[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
        out[name]["elapsed_s"] = time.perf_counter() - started
        print(f"{name}: {json.dumps(out[name])[:300]}", flush=True)

    section("encode", lambda: section_encode(model, inputs, device, batches, precisions))
    encode = out["encode"]
    if "error" not in encode and "skipped" not in encode:
        ran = [p for p in precisions if p in encode]
        best = max((encode[p]["best"] | {"precision": p} for p in ran), key=lambda r: r["slices_per_s"])
    section("embed_many", lambda: section_embed_many(model, slices, best.get("precision", "float32"), device))
    if compile_model and best:
        from napari_mobilesam.engine.precision import torch_dtype

        dtype = None if best["precision"] == "float32" else torch_dtype(best["precision"])
        compiled = {"precision": best["precision"]}
        section("compile", lambda: compiled | section_compile(model, inputs, best["batch"], dtype, device))
    section("click", lambda: section_click(model, device, graphs=device.type == "cuda"))
    out["total_s"] = time.perf_counter() - started
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_throughput.json")
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--budget", type=float, default=420, help="seconds after which no section starts")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_throughput.py needs a CUDA GPU (the tests run its parts on the CPU).")
    out = run("cuda", args.slices, args.batches, not args.no_compile, args.budget)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out} ({out['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
