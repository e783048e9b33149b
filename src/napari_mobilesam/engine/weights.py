"""MobileSAM weights: a hash-checked download cache, and loading them into the model.

Environment variables:

- ``NAPARI_MOBILESAM_WEIGHTS``: path of a ``mobile_sam.pt`` to use instead of the
  cached official file (nothing is downloaded then).
- ``NAPARI_MOBILESAM_WEIGHTS_URL``: where to download the weights from (a mirror);
  the file must still be the official one (its SHA-256 is checked).
- ``NAPARI_MOBILESAM_CACHE``: the cache folder (default: the user cache folder of
  the OS, e.g. ``~/.cache/napari-mobilesam``); weights live in its ``weights/``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path

import pooch
import requests
import torch
from pooch.downloaders import choose_downloader

from ..errors import MobileSAMError
from ..model.mobile_sam import MobileSAM, build_mobile_sam
from .cache_folder import CACHE_ENV, cache_dir
from .checkpoint import WEIGHTS_FILENAME, check_fits, load_state_dict
from .device import DEVICE_ENV, resolve_device
from .malloc_tuning import keep_freed_memory
from .precision import choose_precision

OFFICIAL_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
OFFICIAL_SHA256 = "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
OFFICIAL_SIZE = 40728226  # bytes

WEIGHTS_ENV = "NAPARI_MOBILESAM_WEIGHTS"
WEIGHTS_URL_ENV = "NAPARI_MOBILESAM_WEIGHTS_URL"

# (resolved path, size in bytes, mtime in ns) -> sha256 hex, so loading the same file again does not rehash it.
_SHA256_MEMO: dict[tuple[str, int, int], str] = {}


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _default_cache_dir() -> Path:
    # download_weights() has a parameter named cache_dir that shadows the public function.
    return cache_dir()


def _weights_file(root: Path) -> Path:
    return root / "weights" / WEIGHTS_FILENAME


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's content, read in 1 MiB chunks.

    Remembered per (path, size, modification time), so asking again for an
    unchanged file costs one ``stat``.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    digest = _SHA256_MEMO.get(key)
    if digest is None:
        digest = _hash_file(path)
        _SHA256_MEMO[key] = digest
    return digest


def _hash_file(path: str | os.PathLike) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _want_progressbar() -> bool:
    # tqdm is optional: a bar only when it is installed and someone watches the terminal.
    stderr = sys.stderr
    return importlib.util.find_spec("tqdm") is not None and stderr is not None and stderr.isatty()


def download_weights(
    url: str | None = None,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Path of the MobileSAM weights file, downloading it (about 40 MB) the first time.

    The file is stored as ``<cache_dir>/weights/mobile_sam.pt`` and checked
    against ``sha256``. When it is already there with the right hash, nothing
    touches the network.

    Parameters
    ----------
    url
        Where to download from. Default: ``NAPARI_MOBILESAM_WEIGHTS_URL`` when
        set (e.g. an institute mirror), else :data:`OFFICIAL_URL`.
    sha256
        Expected SHA-256 (hex, with or without a ``sha256:`` prefix). Default:
        the official file's, also when the URL comes from the environment.
    cache_dir
        Cache folder. Default: :func:`cache_dir` (``NAPARI_MOBILESAM_CACHE`` or
        the OS user cache).

    Example::

        path = download_weights()  # <cache>/weights/mobile_sam.pt
        model = load_model(path)

    Raises
    ------
    MobileSAMError
        The download failed (no network, HTTP error: the message says where
        to put the file by hand), the file has the wrong hash (it is deleted),
        or the cache folder cannot be written.
    """
    url = url or _env(WEIGHTS_URL_ENV) or OFFICIAL_URL
    expected = (sha256 or OFFICIAL_SHA256).strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise MobileSAMError(f"sha256={sha256!r} is not a SHA-256 digest; give its 64 hexadecimal digits.")
    root = Path(cache_dir).expanduser().absolute() if cache_dir is not None else _default_cache_dir()
    target = _weights_file(root)

    stale_note = ""
    if target.is_file():
        found = file_sha256(target)
        if found == expected:
            return target
        stale_note = f" The file already at {target} has SHA-256 {found}, not {expected}; it was left as it is."

    _ensure_writable(target.parent, url)

    received: dict[str, object] = {}

    def download(source_url: str, output_file: str, pooch_instance: object) -> None:
        downloader = choose_downloader(source_url, progressbar=_want_progressbar())
        downloader(source_url, output_file, pooch_instance)
        # Recorded so a hash mismatch can report what arrived; pooch deletes the file itself.
        received["sha256"] = _hash_file(output_file)
        received["size"] = os.path.getsize(output_file)

    by_hand = (
        f"To install the weights by hand, download {url} on a machine with internet access and copy it "
        f"to {target}, or set {WEIGHTS_ENV}=/path/to/{WEIGHTS_FILENAME}."
    )
    try:
        pooch.retrieve(
            url,
            known_hash=f"sha256:{expected}",
            fname=WEIGHTS_FILENAME,
            path=target.parent,
            downloader=download,
        )
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise MobileSAMError(
            f"Downloading the MobileSAM weights from {url} failed with HTTP status {status}. {by_hand}{stale_note}"
        ) from error
    except requests.exceptions.RequestException as error:
        raise MobileSAMError(
            f"Could not download the MobileSAM weights from {url} (no network connection, or the server "
            f"did not answer: {type(error).__name__}). {by_hand}{stale_note}"
        ) from error
    except ValueError as error:
        got = received.get("sha256")
        if got is None or got == expected:  # not a hash mismatch: pooch refused the URL, e.g. an unknown protocol
            reason = str(error).rstrip(".")
            raise MobileSAMError(f"Cannot download the MobileSAM weights from {url!r}: {reason}. {by_hand}") from error
        size_note = ""
        if expected == OFFICIAL_SHA256:
            size_note = f" ({received['size']} bytes arrived; the official file has {OFFICIAL_SIZE})"
        raise MobileSAMError(
            f"The file downloaded from {url} is not the expected MobileSAM weights: SHA-256 expected "
            f"{expected}, got {got}{size_note}. The download was deleted. Check the URL "
            f"({WEIGHTS_URL_ENV} if you set it) or the expected hash. {by_hand}"
        ) from error
    except OSError as error:
        raise MobileSAMError(
            f"Could not write the MobileSAM weights to {target.parent} ({error}). Free some disk space or set "
            f"{CACHE_ENV} to another folder. {by_hand}"
        ) from error
    _remember_sha256(target, expected)
    return target


def _remember_sha256(path: Path, digest: str) -> None:
    # pooch has just verified this digest; spare load_model() another 40 MB read.
    path = path.resolve()
    stat = path.stat()
    _SHA256_MEMO[(str(path), stat.st_size, stat.st_mtime_ns)] = digest


def _ensure_writable(folder: Path, url: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise MobileSAMError(
            f"Cannot write to the weights cache folder {folder} ({error.strerror or error}). Set {CACHE_ENV} "
            f"to a folder you can write to, or download {url} yourself and set "
            f"{WEIGHTS_ENV}=/path/to/{WEIGHTS_FILENAME}."
        ) from error


def load_model(
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    *,
    precision: str | None = None,
) -> MobileSAM:
    """MobileSAM with weights loaded, in eval mode, on ``device``.

    Parameters
    ----------
    checkpoint
        Path of a MobileSAM state dict (``mobile_sam.pt``). ``None``: the file
        named by ``NAPARI_MOBILESAM_WEIGHTS`` when set, else the official
        weights from :func:`download_weights` (downloaded once, then cached).
    device
        See :func:`~napari_mobilesam.engine.device.resolve_device`; ``None`` reads
        ``NAPARI_MOBILESAM_DEVICE`` or picks CUDA, MPS, then CPU.
    precision
        The image encoder's arithmetic: ``"float32"`` (default, exact),
        ``"bfloat16"``, ``"float16"`` or ``"auto"`` (reduced where the device
        computes it natively; see :mod:`napari_mobilesam.engine.precision`).
        The weights stay float32 (cast once for the encoder), the embedding is
        float32 and the decoder runs in float32.

    Returns
    -------
    MobileSAM
        With ``weights_path`` (absolute path, str) and ``weights_sha256`` (hex
        SHA-256 of the file) set, which the embedding cache keys on, and
        ``precision`` (the one chosen: ``"float32"``, ``"bfloat16"`` or
        ``"float16"``) with ``precision_reason``, the default of its predictors.

    Example::

        model = load_model()  # official weights, downloaded once
        model = load_model("/data/mobile_sam.pt", device="cpu")

    Raises
    ------
    MobileSAMError
        The device is unavailable, the weights cannot be fetched or read, or
        the checkpoint is not MobileSAM's (the message says what it looks like).
    """
    target_device = resolve_device(device)  # before a possible 40 MB download
    choice = choose_precision(target_device, precision)
    keep_freed_memory()
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
    elif (from_env := _env(WEIGHTS_ENV)) is not None:
        path = Path(from_env).expanduser()
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise MobileSAMError(
                f"{WEIGHTS_ENV} points to {path}, which {what}. Set it to the path of {WEIGHTS_FILENAME}, or unset "
                f"it to use the official weights (downloaded once to {_weights_file(_default_cache_dir())})."
            )
    else:
        path = download_weights()

    state = load_state_dict(path)
    model = build_mobile_sam()
    check_fits(model.state_dict(), state, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # _check_fits covers keys and shapes; this is a safety net
        raise MobileSAMError(f"{path} does not fit MobileSAM: {error}. Use MobileSAM's {WEIGHTS_FILENAME}.") from error
    model.to(target_device).eval()
    model.weights_path = str(path.resolve())
    model.weights_sha256 = file_sha256(path)
    model.precision, model.precision_reason = choice.name, choice.reason
    return model


def check_weights(path: str | os.PathLike) -> None:
    """Raise :class:`MobileSAMError` unless ``path`` reads as MobileSAM's weights (as :func:`load_model` would).

    Reads the file and checks its keys and shapes, without moving anything to a
    device: what a run checks before it creates anything, when the model itself
    is loaded elsewhere (on dask workers).
    """
    path = Path(path).expanduser()
    check_fits(build_mobile_sam().state_dict(), load_state_dict(path), path)


def weights_status() -> dict:
    """Where the weights that :func:`load_model` would use are, and which overrides are in effect.

    Returns a dict with:

    - ``path`` (str): the file ``load_model()`` would read (``NAPARI_MOBILESAM_WEIGHTS``
      or the cached official file); ``present`` (bool): whether it exists.
    - ``source``: ``"NAPARI_MOBILESAM_WEIGHTS"`` or ``"cache"``.
    - ``cache_path`` (str), ``cache_present`` (bool), ``cache_verified`` (bool or
      ``None`` when absent): the cached official file and whether its SHA-256 matches.
    - ``url``: where a download would come from; ``sha256``, ``size``: the official file's.
    - ``overrides``: the napari-mobilesam environment variables that are set, name -> value.
    """
    overrides = {name: os.environ[name] for name in (WEIGHTS_ENV, WEIGHTS_URL_ENV, CACHE_ENV, DEVICE_ENV) if _env(name)}
    cached = _weights_file(_default_cache_dir())
    cache_verified = None
    if cached.is_file():
        try:
            cache_verified = file_sha256(cached) == OFFICIAL_SHA256
        except OSError:
            cache_verified = False
    from_env = _env(WEIGHTS_ENV)
    path = Path(from_env).expanduser() if from_env else cached
    return {
        "path": str(path),
        "present": path.is_file(),
        "source": WEIGHTS_ENV if from_env else "cache",
        "cache_path": str(cached),
        "cache_present": cached.is_file(),
        "cache_verified": cache_verified,
        "url": _env(WEIGHTS_URL_ENV) or OFFICIAL_URL,
        "sha256": OFFICIAL_SHA256,
        "size": OFFICIAL_SIZE,
        "overrides": overrides,
    }


def resolve_weights(weights: str | os.PathLike | None) -> Path:
    """The weights file a run uses (checked to exist): ``weights``, ``NAPARI_MOBILESAM_WEIGHTS``, or the download."""
    if weights is None and os.environ.get(WEIGHTS_ENV, "").strip():
        weights = os.environ[WEIGHTS_ENV].strip()
        source = f"{WEIGHTS_ENV}={weights}"
    else:
        source = f"--weights {weights}"
    if weights is None:
        return download_weights()
    path = Path(weights).expanduser().absolute()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise MobileSAMError(f"{source}: {path} {what}. Give the path of the MobileSAM weights file (mobile_sam.pt).")
    return path
