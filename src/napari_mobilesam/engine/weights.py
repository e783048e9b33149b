"""Loading a model by name: its files from the download cache or local paths, into MobileSAM and its instance decoder.

Environment variables:

- ``NAPARI_MOBILESAM_MODEL``: the model loaded when none is named (default ``mobile_sam``;
  the names are those of :mod:`~napari_mobilesam.engine.model_registry`).
- ``NAPARI_MOBILESAM_WEIGHTS``: path of a ``mobile_sam.pt`` to use instead of the
  cached official file (nothing is downloaded then).
- ``NAPARI_MOBILESAM_WEIGHTS_URL``: where to download ``mobile_sam.pt`` from (a mirror);
  the file must still be the official one (its SHA-256 is checked).
- ``NAPARI_MOBILESAM_MODELS_URL``: a mirror of every model file (see :mod:`~napari_mobilesam.engine.downloads`).
- ``NAPARI_MOBILESAM_CACHE``: the cache folder (default: the user cache folder of
  the OS, e.g. ``~/.cache/napari-mobilesam``); weights live in its ``weights/``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import torch

from ..errors import MobileSAMError
from ..model.mobile_sam import MobileSAM, build_mobile_sam
from .cache_folder import CACHE_ENV
from .checkpoint import WEIGHTS_FILENAME, check_fits, load_state_dict  # noqa: F401 -- load_state_dict: public here
from .checkpoint_formats import build_decoder, read_decoder_file, read_sam_checkpoint
from .device import DEVICE_ENV, resolve_device
from .downloads import MODELS_URL_ENV, cached_path, env_value, fetch_file, file_digest, file_sha256, source_url
from .malloc_tuning import keep_freed_memory
from .model_registry import MODEL_ENV, MODELS, WEIGHTS_ENV, WEIGHTS_URL_ENV, ModelSpec, model_spec
from .precision import choose_precision

_MOBILE_SAM = MODELS["mobile_sam"].sam
OFFICIAL_URL = _MOBILE_SAM.url
OFFICIAL_SHA256 = _MOBILE_SAM.known_hash.removeprefix("sha256:")
OFFICIAL_SIZE = _MOBILE_SAM.size  # bytes


def download_weights(
    url: str | None = None,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Path of the MobileSAM weights file, downloading it (about 40 MB) the first time.

    The file is stored as ``<cache_dir>/weights/mobile_sam.pt`` and checked
    against ``sha256``. When it is already there with the right hash, nothing
    touches the network. (Other models' files: :func:`load_model` with ``model=``.)

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
    expected = (sha256 or OFFICIAL_SHA256).strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise MobileSAMError(f"sha256={sha256!r} is not a SHA-256 digest; give its 64 hexadecimal digits.")
    size = OFFICIAL_SIZE if expected == OFFICIAL_SHA256 else None
    file = dataclasses.replace(_MOBILE_SAM, known_hash=f"sha256:{expected}", size=size)
    return _fetch(file, "the MobileSAM weights", url=url, root=cache_dir)


def _fetch(file, what: str, url: str | None = None, root=None) -> Path:
    also = f", or set {file.path_env}=/path/to/{file.filename}" if file.path_env else ""
    return fetch_file(file, what=what, url=url, root=root, by_hand_also=also)


def _sam_path(spec: ModelSpec, checkpoint) -> Path:
    """The SAM weights file: ``checkpoint``, the file's environment override, or the cached download."""
    if checkpoint is not None:
        return Path(checkpoint).expanduser()
    file = spec.sam
    if file.path_env and (from_env := env_value(file.path_env)) is not None:
        path = Path(from_env).expanduser()
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise MobileSAMError(
                f"{file.path_env} points to {path}, which {what}. Set it to the path of {file.filename}, or unset "
                f"it to use the official weights (downloaded once to {cached_path(file)})."
            )
        return path
    return _fetch(file, file_label(spec, "weights"))


def _decoder_path(spec: ModelSpec, decoder) -> Path | None:
    if decoder is not None:
        return Path(decoder).expanduser()
    return None if spec.decoder is None else _fetch(spec.decoder, file_label(spec, "decoder"))


def file_label(spec: ModelSpec, kind: str) -> str:
    """How messages name a model's ``"weights"`` or ``"decoder"`` file: ``"the MobileSAM weights"``, ..."""
    if kind == "decoder":
        return f"the {spec.name} instance decoder"
    return f"the {spec.name} weights" if spec.has_decoder else "the MobileSAM weights"


def load_model(
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    *,
    model: str | None = None,
    decoder: str | os.PathLike | None = None,
    precision: str | None = None,
) -> MobileSAM:
    """A registered model (MobileSAM weights and, if it has one, micro-sam's instance decoder), eval mode, on ``device``.

    Parameters
    ----------
    checkpoint
        A local SAM weights file instead of the model's own: a MobileSAM state
        dict, or a micro-sam checkpoint (its ``decoder_state`` is then the
        decoder). ``None``: for ``mobile_sam`` the file named by
        ``NAPARI_MOBILESAM_WEIGHTS`` when set, else the model's file from the
        download cache (downloaded once, hash-checked).
    device
        See :func:`~napari_mobilesam.engine.device.resolve_device`; ``None`` reads
        ``NAPARI_MOBILESAM_DEVICE`` or picks CUDA, MPS, then CPU.
    model
        A registered name (:data:`~napari_mobilesam.engine.model_registry.MODELS`):
        ``"mobile_sam"``, ``"vit_t_lm"``, ``"vit_t_em_organelles"``. ``None``:
        ``NAPARI_MOBILESAM_MODEL``, else ``"mobile_sam"``. It decides the default
        files, the input normalisation and the AIS defaults.
    decoder
        A local instance decoder file instead of the model's own (a plain decoder
        state dict, or a micro-sam checkpoint with a ``decoder_state``).
    precision
        The image encoder's arithmetic: ``"float32"`` (default, exact),
        ``"bfloat16"``, ``"float16"`` or ``"auto"`` (reduced where the device
        computes it natively; see :mod:`napari_mobilesam.engine.precision`).
        The weights stay float32 (cast once for the encoder), the embedding is
        float32 and the decoder runs in float32.

    Returns
    -------
    MobileSAM
        With ``model_name``, ``input_normalization``, ``weights_path`` (absolute,
        str) and ``weights_sha256`` (hex SHA-256 of the file; the embedding cache
        keys on it), and ``instance_decoder``: the
        :class:`~napari_mobilesam.model.instance_decoder.InstanceDecoder` (with its
        own ``weights_path`` and ``weights_sha256``) or None. The decoder is kept
        outside the module tree, so ``state_dict()`` stays ``mobile_sam.pt``'s, and ``precision`` (the
        encoder's, chosen: ``"float32"``, ``"bfloat16"`` or ``"float16"``) with
        ``precision_reason``, the default of its predictors.

    Example::

        model = load_model()                    # official MobileSAM weights, downloaded once
        model = load_model(model="vit_t_lm")    # micro-sam's light-microscopy model and its decoder
        model = load_model("/data/mobile_sam.pt", device="cpu")

    Raises
    ------
    MobileSAMError
        An unknown model name, an unavailable device, files that cannot be
        fetched or read, or a checkpoint or decoder that does not fit (the
        message says what it looks like).
    """
    target_device = resolve_device(device)  # before a possible download
    spec = model_spec(model)
    choice = choose_precision(target_device, precision)
    keep_freed_memory()
    path = _sam_path(spec, checkpoint)
    contents = read_sam_checkpoint(path)
    sam = build_mobile_sam()
    check_fits(sam.state_dict(), contents.sam, path)
    try:
        sam.load_state_dict(contents.sam, strict=True)
    except RuntimeError as error:  # check_fits covers keys and shapes; this is a safety net
        raise MobileSAMError(f"{path} does not fit MobileSAM: {error}. Use MobileSAM's {WEIGHTS_FILENAME}.") from error
    sam.to(target_device).eval()
    sam.weights_path = str(path.resolve())
    sam.weights_sha256 = file_sha256(path)
    sam.precision, sam.precision_reason = choice.name, choice.reason

    instance_decoder = None
    decoder_file = path if decoder is None and contents.decoder is not None else _decoder_path(spec, decoder)
    if decoder_file is not None:
        state = contents.decoder if decoder_file is path else read_decoder_file(decoder_file)
        instance_decoder = build_decoder(state, decoder_file).to(target_device)
        instance_decoder.weights_path = str(decoder_file.resolve())
        instance_decoder.weights_sha256 = file_sha256(decoder_file)
    return attach_instance_decoder(sam, instance_decoder, model_name=spec.name, normalization=spec.normalization)


def attach_instance_decoder(model, decoder, *, model_name: str | None = None, normalization: str | None = None):
    """Give ``model`` (a MobileSAM) ``decoder`` as its ``instance_decoder`` (None: none), and optionally its
    registry name and input normalisation; returns ``model``.

    The decoder is kept outside the module tree (``model.state_dict()`` and
    ``model.to()`` leave it alone; it runs on its own device).
    """
    object.__setattr__(model, "instance_decoder", decoder)  # not a submodule: see the docstring
    if model_name is not None:
        model.model_name = model_name
    if normalization is not None:
        model.input_normalization = normalization
    return model


def check_weights(path: str | os.PathLike) -> bool:
    """Raise :class:`MobileSAMError` unless ``path`` reads as MobileSAM's weights (as :func:`load_model` would).

    Reads the file and checks its keys and shapes, without moving anything to a
    device: what a run checks before it creates anything, when the model itself
    is loaded elsewhere (on dask workers). Returns whether the file holds an
    instance decoder too (a micro-sam checkpoint), which is then checked as well.
    """
    path = Path(path).expanduser()
    contents = read_sam_checkpoint(path)
    check_fits(build_mobile_sam().state_dict(), contents.sam, path)
    if contents.decoder is not None:
        build_decoder(contents.decoder, path)
    return contents.decoder is not None


def check_decoder(path: str | os.PathLike) -> None:
    """Raise :class:`MobileSAMError` unless ``path`` reads as micro-sam's instance decoder."""
    path = Path(path).expanduser()
    build_decoder(read_decoder_file(path), path)


def resolve_model_files(
    model: str | None, weights: str | os.PathLike | None, decoder: str | os.PathLike | None
) -> tuple[str, str | None]:
    """``(SAM weights file, decoder file or None)`` a run of ``model`` uses, checked to exist, downloaded if needed.

    The decoder is None when the model has none, or when ``weights`` is a
    micro-sam checkpoint that holds it. What a command line resolves before
    anything is created, so that dask workers only read local files.
    """
    spec = model_spec(model, option="--model")
    sam = _existing(weights, "--weights", f"the SAM weights file ({spec.sam.filename})") if weights else None
    sam = sam or _sam_path(spec, None)
    if decoder is not None:
        return str(sam), str(_existing(decoder, "--decoder", "the instance decoder file"))
    if spec.decoder is None or (weights is not None and read_sam_checkpoint(sam).decoder is not None):
        return str(sam), None
    return str(sam), str(_decoder_path(spec, None))


def _existing(path: str | os.PathLike, option: str, what: str) -> Path:
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise MobileSAMError(f"{option}: {path} {state}. Give the path of {what}.")
    return path


def resolve_weights(weights: str | os.PathLike | None) -> Path:
    """The ``mobile_sam`` weights file a run uses (checked to exist): ``weights``, ``NAPARI_MOBILESAM_WEIGHTS``, or the download."""
    if weights is None and (from_env := env_value(WEIGHTS_ENV)):
        source, weights = f"{WEIGHTS_ENV}={from_env}", from_env
    else:
        source = f"--weights {weights}"
    if weights is None:
        return download_weights()
    path = Path(weights).expanduser().absolute()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise MobileSAMError(f"{source}: {path} {what}. Give the path of the MobileSAM weights file (mobile_sam.pt).")
    return path


def weights_status(model: str | None = None) -> dict:
    """Where the SAM weights that :func:`load_model` would use for ``model`` are, and which overrides are in effect.

    Returns a dict with:

    - ``model`` (str): the model's name;
    - ``path`` (str): the file ``load_model()`` would read (``NAPARI_MOBILESAM_WEIGHTS``
      for ``mobile_sam``, or the cached file); ``present`` (bool): whether it exists.
    - ``source``: ``"NAPARI_MOBILESAM_WEIGHTS"`` or ``"cache"``.
    - ``cache_path`` (str), ``cache_present`` (bool), ``cache_verified`` (bool or
      ``None`` when absent): the cached file and whether its hash matches.
    - ``url``: where a download would come from; ``sha256`` (``mobile_sam.pt``'s), ``hash``, ``size``.
    - ``overrides``: the napari-mobilesam environment variables that are set, name -> value.
    """
    spec = model_spec(model)
    names = (MODEL_ENV, WEIGHTS_ENV, WEIGHTS_URL_ENV, MODELS_URL_ENV, CACHE_ENV, DEVICE_ENV)
    overrides = {name: os.environ[name] for name in names if env_value(name)}
    status = file_status(spec.sam)
    from_env = env_value(spec.sam.path_env) if spec.sam.path_env else None
    path = Path(from_env).expanduser() if from_env else Path(status["cache_path"])
    return {
        "model": spec.name,
        "path": str(path),
        "present": path.is_file(),
        "source": spec.sam.path_env if from_env else "cache",
        **status,
        "sha256": OFFICIAL_SHA256,
        "overrides": overrides,
    }


def file_status(file) -> dict:
    """A registry file in the cache: ``cache_path``, ``cache_present``, ``cache_verified``, ``url``, ``hash``, ``size``."""
    cached = cached_path(file)
    verified = None
    if cached.is_file():
        algorithm, _, expected = file.known_hash.partition(":")
        try:
            verified = file_digest(cached, algorithm) == expected
        except OSError:
            verified = False
    return {
        "cache_path": str(cached),
        "cache_present": cached.is_file(),
        "cache_verified": verified,
        "url": source_url(file),
        "hash": file.known_hash,
        "size": file.size,
    }
