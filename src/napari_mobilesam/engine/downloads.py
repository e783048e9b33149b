"""Model files in the cache folder: downloaded once with pooch, hash-checked, and clear about working offline.

A file of the registry (:class:`~napari_mobilesam.engine.model_registry.ModelFile`)
lives at ``<cache folder>/weights/<path>``. When it is there with the right
hash nothing touches the network; otherwise it is downloaded (a progress bar
on a terminal), checked against its hash (SHA-256 or xxh128; pooch checks
xxh128 with the ``xxhash`` package) and kept. A failed download says where to
put the file by hand.

Where a download comes from, first match wins:

- the ``url_env`` of the file (``NAPARI_MOBILESAM_WEIGHTS_URL`` for ``mobile_sam.pt``): a full URL;
- ``NAPARI_MOBILESAM_MODELS_URL``: a mirror holding the files as the cache's ``weights/``
  folder does (``<mirror>/mobile_sam.pt``, ``<mirror>/vit_t_lm/vit_t.pt``, ...);
- the file's own URL.

The hash is the registry's whatever the source: a mirror must serve the same files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from ..errors import MobileSAMError
from .cache_folder import CACHE_ENV, cache_dir
from .model_registry import ModelFile

MODELS_URL_ENV = "NAPARI_MOBILESAM_MODELS_URL"

# (resolved path, size in bytes, mtime in ns, algorithm) -> hex digest, so an unchanged file is not hashed again.
_DIGEST_MEMO: dict[tuple[str, int, int, str], str] = {}
_NAMES = {"sha256": "SHA-256", "xxh128": "xxh128"}


def env_value(name: str) -> str | None:
    """The environment variable ``name`` stripped, or None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def cached_path(file: ModelFile, root: str | os.PathLike | None = None) -> Path:
    """Where ``file`` lives in the cache folder ``root`` (default: :func:`cache_dir`)."""
    root = Path(root).expanduser().absolute() if root is not None else cache_dir()
    return root / "weights" / file.path


def source_url(file: ModelFile) -> str:
    """Where ``file`` would be downloaded from now (see the module doc)."""
    if file.url_env and (override := env_value(file.url_env)):
        return override
    mirror = env_value(MODELS_URL_ENV)
    return f"{mirror.rstrip('/')}/{file.path}" if mirror else file.url


def _hash_file(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    if algorithm == "sha256":
        digest = hashlib.sha256()
    else:
        import xxhash  # pooch's own xxh128, a dependency

        digest = xxhash.xxh128()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The ``algorithm`` digest (``"sha256"`` or ``"xxh128"``, hex) of a file, remembered per path, size and mtime."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, algorithm)
    digest = _DIGEST_MEMO.get(key)
    if digest is None:
        digest = _DIGEST_MEMO[key] = _hash_file(path, algorithm)
    return digest


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's content; asking again for an unchanged file costs one ``stat``."""
    return file_digest(path, "sha256")


def _split_hash(known_hash: str) -> tuple[str, str]:
    algorithm, _, digest = known_hash.partition(":")
    return algorithm.lower(), digest.lower()


def _remember(path: Path, algorithm: str, digest: str) -> None:
    # pooch has just verified this digest: spare the next check another read of the file.
    path = path.resolve()
    stat = path.stat()
    _DIGEST_MEMO[(str(path), stat.st_size, stat.st_mtime_ns, algorithm)] = digest


def _want_progressbar() -> bool:
    # tqdm is optional: a bar only when it is installed and someone watches the terminal.
    stderr = sys.stderr
    return importlib.util.find_spec("tqdm") is not None and stderr is not None and stderr.isatty()


def fetch_file(
    file: ModelFile,
    *,
    what: str,
    url: str | None = None,
    root: str | os.PathLike | None = None,
    by_hand_also: str = "",
) -> Path:
    """The path of ``file`` in the cache folder ``root``, downloading and checking it when it is missing or stale.

    ``what`` names the file in messages (``"the MobileSAM weights"``); ``url``
    overrides the source; ``by_hand_also`` ends the "put it there by hand"
    advice (e.g. ``", or set NAPARI_MOBILESAM_WEIGHTS=..."``).

    Raises:
        MobileSAMError: no network or an HTTP error (the message names the URL
            and the path to copy the file to), the download's hash differs (it
            is deleted), or the cache folder cannot be written.
    """
    import pooch
    import requests
    from pooch.downloaders import choose_downloader

    url = url or source_url(file)
    algorithm, expected = _split_hash(file.known_hash)
    target = cached_path(file, root)
    stale_note = ""
    if target.is_file():
        found = file_digest(target, algorithm)
        if found == expected:
            return target
        stale_note = (
            f" The file already at {target} has {_NAMES.get(algorithm, algorithm)} {found}, not {expected}; "
            "it was left as it is."
        )

    by_hand = (
        f"To install it by hand, download {url} on a machine with internet access and copy it to {target}"
        f"{by_hand_also}."
    )
    _ensure_writable(target.parent, what, by_hand)
    received: dict[str, object] = {}

    def download(source_url: str, output_file: str, pooch_instance: object) -> None:
        choose_downloader(source_url, progressbar=_want_progressbar())(source_url, output_file, pooch_instance)
        # Recorded so a hash mismatch can report what arrived; pooch deletes the file itself.
        received["digest"] = _hash_file(output_file, algorithm)
        received["size"] = os.path.getsize(output_file)

    try:
        pooch.retrieve(url, known_hash=f"{algorithm}:{expected}", fname=target.name, path=target.parent, downloader=download)
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise MobileSAMError(
            f"Downloading {what} from {url} failed with HTTP status {status}. {by_hand}{stale_note}"
        ) from error
    except requests.exceptions.RequestException as error:
        raise MobileSAMError(
            f"Could not download {what} from {url} (no network connection, or the server did not answer: "
            f"{type(error).__name__}). {by_hand}{stale_note}"
        ) from error
    except ValueError as error:
        got = received.get("digest")
        if got is None or got == expected:  # not a hash mismatch: pooch refused the URL, e.g. an unknown protocol
            reason = str(error).rstrip(".")
            raise MobileSAMError(f"Cannot download {what} from {url!r}: {reason}. {by_hand}") from error
        size_note = f" ({received['size']} bytes arrived; the expected file has {file.size})" if file.size else ""
        raise MobileSAMError(
            f"The file downloaded from {url} is not {what}: {_NAMES.get(algorithm, algorithm)} expected {expected}, got {got}{size_note}. "
            f"The download was deleted. Check the URL ({file.url_env or MODELS_URL_ENV} if you set it) or the expected "
            f"hash. {by_hand}"
        ) from error
    except OSError as error:
        raise MobileSAMError(
            f"Could not write {what} to {target.parent} ({error}). Free some disk space or set {CACHE_ENV} to "
            f"another folder. {by_hand}"
        ) from error
    _remember(target, algorithm, expected)
    return target


def _ensure_writable(folder: Path, what: str, by_hand: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise MobileSAMError(
            f"Cannot write {what} to the cache folder {folder} ({error.strerror or error}). Set {CACHE_ENV} to a "
            f"folder you can write to. {by_hand}"
        ) from error
