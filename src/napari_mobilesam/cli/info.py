"""The ``info`` command: version, device, weights and cache, as text or ``--json``."""

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

    status = weights_status()
    if args.weights:
        path = os.path.abspath(os.path.expanduser(args.weights))
        status.update(path=path, present=os.path.isfile(path), source="--weights")
    try:
        device = str(resolve_device(args.device, option="--device"))
        device_note = "--device" if args.device else (DEVICE_ENV if os.environ.get(DEVICE_ENV) else "best available")
    except MobileSAMError as error:
        if args.device:
            raise
        device, device_note = "unavailable", str(error)
    cache = None if args.no_cache else EmbeddingCache(memory_bytes=0, directory=args.cache or True)
    try:
        import distributed

        dask_version = distributed.__version__
    except ImportError:
        dask_version = None
    report = {
        "version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "device_source": device_note,
        "threads": torch.get_num_threads(),
        "weights": status,
        "cache": None if cache is None else {"path": str(cache.directory), "bytes": cache.disk_bytes_used()},
        "distributed": dask_version,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    weights = status["path"]
    if status["present"]:
        state = "present"
        if status["source"] == "cache" and status.get("cache_verified") is False:
            state = "present, but not the official file (checksum differs): delete it to download again"
    else:
        state = f"missing: downloaded on first use from {status['url']}"
    lines = [
        f"napari-mobilesam {__version__} (Python {report['python']}, torch {report['torch']})",
        f"device:   {device} ({device_note}); torch threads: {report['threads']}",
        f"weights:  {weights} [{state}] (from {status['source']})",
    ]
    if cache is None:
        lines.append("cache:    disk cache off (--no-cache)")
    else:
        from ..cache.embedding_cache import _format_bytes

        lines.append(f"cache:    {cache.directory} ({_format_bytes(report['cache']['bytes'])})")
    lines.append(f"dask:     {'distributed ' + dask_version if dask_version else 'not installed (no --scheduler)'}")
    for name, value in status["overrides"].items():
        lines.append(f"env:      {name}={value}")
    print("\n".join(lines))
