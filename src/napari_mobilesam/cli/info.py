"""The ``info`` command: version, device, weights, the models (cached or not, where each file goes) and cache,
as text or ``--json``."""

from __future__ import annotations

import json
import os
import platform

from .. import __version__
from ..errors import MobileSAMError


def cmd_info(args) -> None:
    """Print the report; an unusable ``--device`` is an error, an unusable default device is only noted."""
    import torch

    from ..cache.embedding_cache import EmbeddingCache
    from ..engine.device import DEVICE_ENV, resolve_device
    from ..engine.weights import weights_status

    status = weights_status(args.model)
    if args.weights:
        path = os.path.abspath(os.path.expanduser(args.weights))
        status.update(path=path, present=os.path.isfile(path), source="--weights")
    status["problem"] = _weights_problem(status)
    try:
        device = str(resolve_device(args.device, option="--device"))
        device_note = "--device" if args.device else (DEVICE_ENV if os.environ.get(DEVICE_ENV) else "best available")
    except MobileSAMError as error:
        if args.device:
            raise
        device, device_note = "unavailable", str(error)
    precision = _precision_report(device, args.precision)
    cache = None if args.no_cache else EmbeddingCache(memory_bytes=0, directory=args.cache or True)
    dask_version, distributed_version = _version("dask"), _version("distributed")
    report = {
        "version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "device_source": device_note,
        "threads": torch.get_num_threads(),
        "precision": precision,
        "weights": status,
        "models": models_report(),
        "cache": None if cache is None else _cache_report(cache),
        "dask": dask_version,
        "distributed": distributed_version,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    weights = status["path"]
    if status["problem"]:
        state = status["problem"]
    elif status["source"] == "cache" and not status["present"]:
        state = f"missing: downloaded on first use from {status['url']}"
    elif status["source"] == "cache":
        state = "present: the official file (checksum verified)"
    else:
        state = "present: loads as MobileSAM"
    lines = [
        f"napari-mobilesam {__version__} (Python {report['python']}, torch {report['torch']})",
        f"device:   {device} ({device_note}); torch threads: {report['threads']}",
        f"precision: {precision['used']} ({precision['reason']}); auto here: {precision['auto']} "
        f"({precision['auto_reason']})",
        f"weights:  {weights} [{state}] (from {status['source']})",
    ]
    if cache is None:
        lines.append("cache:    disk cache off (--no-cache)")
    elif cache.disk_problem:
        lines.append(f"cache:    disk cache off: {cache.disk_problem}; point --cache or NAPARI_MOBILESAM_CACHE at a folder")
    else:
        from ..cache.embedding_cache import _format_bytes

        lines.append(f"cache:    {cache.directory} ({_format_bytes(report['cache']['bytes'])})")
    lines.append(f"dask:     {_describe_dask(dask_version, distributed_version)}")
    lines += _describe_models(report["models"])
    for name, value in status["overrides"].items():
        lines.append(f"env:      {name}={value}")
    print("\n".join(lines))


def models_report() -> list[dict]:
    """Each registered model: ``name``, ``description``, ``default``, ``decoder`` (whether it has one), ``source``
    and ``files``: each file's ``kind``, ``cache_path`` (where to put it by hand), ``cache_present``,
    ``cache_verified`` and ``url``."""
    from ..engine.model_registry import MODELS, default_model_name
    from ..engine.weights import file_status

    try:
        default = default_model_name()
    except MobileSAMError:
        default = None  # a bad NAPARI_MOBILESAM_MODEL: shown in env, refused when a model loads
    return [
        {
            "name": name,
            "description": spec.description,
            "default": name == default,
            "decoder": spec.has_decoder,
            "source": spec.source,
            "files": [{"kind": kind, **file_status(file)} for kind, file in spec.files()],
        }
        for name, spec in MODELS.items()
    ]


def _describe_models(models: list[dict]) -> list[str]:
    lines = ["models:   (--model NAME or NAPARI_MOBILESAM_MODEL; offline, copy each file to the path shown)"]
    for model in models:
        cached = all(file["cache_verified"] for file in model["files"])
        state = "cached" if cached else "not cached: downloaded on first use"
        default = ", the default" if model["default"] else ""
        lines.append(f"  {model['name']}: {model['description']} [{state}{default}]")
        for file in model["files"]:
            lines.append(f"      {file['kind']}: {file['cache_path']}  <- {file['url']}")
    return lines


def _precision_report(device: str, precision: str) -> dict:
    """The precision a run would use on ``device`` and what ``auto`` picks there, each with its reason."""
    from ..engine.precision import choose_precision, cpu_bf16_features

    where = device if device != "unavailable" else "cpu"
    used, auto = choose_precision(where, precision), choose_precision(where, "auto")
    report = {"asked": precision, "used": used.name, "reason": used.reason, "auto": auto.name}
    report.update(auto_reason=auto.reason.removeprefix("auto: "), cpu_features=cpu_bf16_features())
    return report


def _weights_problem(status: dict) -> str | None:
    """Why the weights a run would use cannot be used (missing where nothing is downloaded, or not loading), or None."""
    from ..engine.weights import WEIGHTS_ENV, check_weights

    source = status["source"]
    if not status["present"]:
        if source == "cache":
            from pathlib import Path

            from ..cache.store import folder_problem

            problem = folder_problem(Path(status["path"]).parent)
            return f"missing, and it cannot be downloaded there: {problem}" if problem else None
        what = "a folder" if os.path.isdir(status["path"]) else "missing"
        fix = (
            f"set {WEIGHTS_ENV} to the path of mobile_sam.pt, or unset it to download the official weights"
            if source == WEIGHTS_ENV
            else "give the path of mobile_sam.pt"
        )
        return f"{what} ({source} names it; nothing is downloaded then): {fix}"
    if source == "cache" and status.get("cache_verified") is False:
        return "present, but not the official file (checksum differs): delete it to download again"
    if source == "cache":
        return None  # the official checksum: it loads
    try:
        check_weights(status["path"])
    except MobileSAMError as error:
        return f"present, but not usable: {error}"
    return None


def _cache_report(cache) -> dict:
    problem = cache.disk_problem
    path = str(cache.disk_folder) if problem else str(cache.directory)
    return {"path": path, "bytes": cache.disk_bytes_used(), "problem": problem}


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def _describe_dask(dask_version: str | None, distributed_version: str | None) -> str:
    if distributed_version:
        return f"dask {dask_version}, distributed {distributed_version}"
    install = "pip install 'napari-mobilesam[distributed]' for --scheduler/--workers"
    if dask_version:
        return f"dask {dask_version}; dask.distributed not installed ({install})"
    return f"not installed ({install})"
