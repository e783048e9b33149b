"""The models napari-mobilesam loads by name: SAM weights, an optional instance decoder, and what each expects.

A registry is data: each name maps to a :class:`ModelSpec` -- where its files
come from (URL and hash, checked on download), where they live in the cache
folder, what the model is for, the input normalisation it was trained with,
and micro-sam's per-model AIS settings.

- ``mobile_sam`` (the default): the official MobileSAM weights; no decoder.
- ``vit_t_lm``, ``vit_t_em_organelles``: micro-sam's MobileSAM fine-tunes
  (Archit et al., Nature Methods 2025; code MIT, computational-cell-analytics)
  and their instance decoders, from the bioimage.io model zoo. URLs and xxh128
  hashes are micro-sam 1.8.14's (``micro_sam/util.py``).

Files live in ``<cache folder>/weights/<path>`` (``mobile_sam.pt``,
``vit_t_lm/vit_t.pt``, ...). ``NAPARI_MOBILESAM_MODEL`` names the default
model. Plain data, cheap to import (no torch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..errors import MobileSAMError
from ..segment.instance_params import MODEL_DEFAULTS

MODEL_ENV = "NAPARI_MOBILESAM_MODEL"
WEIGHTS_ENV = "NAPARI_MOBILESAM_WEIGHTS"
WEIGHTS_URL_ENV = "NAPARI_MOBILESAM_WEIGHTS_URL"
DEFAULT_MODEL = "mobile_sam"

#: How the encoder's 8-bit input is made when no contrast limits are given (see engine.preprocessing).
NORMALIZATIONS = ("percentiles", "min-max")

_BIOIMAGE_IO = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io"


@dataclass(frozen=True)
class ModelFile:
    """One file of a model.

    Attributes:
        url: where it is downloaded from.
        known_hash: ``"algorithm:hex"`` as pooch checks it (``sha256`` or ``xxh128``).
        path: where it lives below ``<cache folder>/weights/`` (and below a mirror's URL).
        size: bytes, when known (named when a download has the wrong hash).
        path_env: an environment variable naming a local file to use instead (nothing is downloaded then).
        url_env: an environment variable naming a URL to download it from instead.
    """

    url: str
    known_hash: str
    path: str
    size: int | None = None
    path_env: str | None = None
    url_env: str | None = None

    @property
    def filename(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class ModelSpec:
    """A named model: its SAM weights, its instance decoder (or None) and what they expect.

    Attributes:
        name: the registry name (``load_model(model=name)``, ``--model name``).
        description: what it is for, in the user's words.
        sam: the SAM (MobileSAM architecture) weights.
        decoder: micro-sam's instance decoder for AIS/APG, or None.
        normalization: the encoder input without contrast limits: ``"percentiles"``
            (the 1st..99.8th percentiles to 0..255) or ``"min-max"`` (micro-sam's:
            each channel's minimum..maximum to 0..255).
        ais_defaults: micro-sam's AIS settings for this model (the widget's and
            the command line's defaults; the API keeps micro-sam's ``generate()`` ones).
        source: where the weights come from (credit and licence).
    """

    name: str
    description: str
    sam: ModelFile
    decoder: ModelFile | None = None
    normalization: str = "percentiles"
    ais_defaults: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    def files(self) -> list[tuple[str, ModelFile]]:
        """``[("weights", file), ("decoder", file)]``, the decoder only when there is one."""
        return [("weights", self.sam)] + ([("decoder", self.decoder)] if self.decoder else [])


def _microsam(name: str, zoo_id: str, version: str, sam_hash: str, decoder_hash: str, description: str) -> ModelSpec:
    base = f"{_BIOIMAGE_IO}/{zoo_id}/{version}/files"
    return ModelSpec(
        name=name,
        description=description,
        sam=ModelFile(f"{base}/vit_t.pt", f"xxh128:{sam_hash}", f"{name}/vit_t.pt"),
        decoder=ModelFile(f"{base}/vit_t_decoder.pt", f"xxh128:{decoder_hash}", f"{name}/vit_t_decoder.pt"),
        normalization="min-max",
        ais_defaults=MappingProxyType(dict(MODEL_DEFAULTS[name])),
        source=f"micro-sam (MIT), bioimage.io model {zoo_id} {version}",
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mobile_sam",
            description="MobileSAM: general images, interactive prompts (no instance decoder)",
            sam=ModelFile(
                "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
                "sha256:6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
                "mobile_sam.pt",
                40728226,
                path_env=WEIGHTS_ENV,
                url_env=WEIGHTS_URL_ENV,
            ),
            source="MobileSAM (Apache-2.0), Chaoning Zhang et al.",
        ),
        _microsam(
            "vit_t_lm",
            "faithful-chicken",
            "1.1",
            "72ec5074774761a6e5c05a08942f981e",
            "3e914a5f397b0312cdd36813031f8823",
            "micro-sam for light microscopy (cells, nuclei), with an instance decoder",
        ),
        _microsam(
            "vit_t_em_organelles",
            "greedy-whale",
            "1",
            "253474720c497cce605e57c9b1d18fd9",
            "8f897c7bb93174a4d1638827c4dd6f44",
            "micro-sam for electron microscopy (mitochondria, nuclei), with an instance decoder",
        ),
    )
}


def models_with_decoder() -> list[str]:
    """The registered models that can run AIS and APG."""
    return [name for name, spec in MODELS.items() if spec.has_decoder]


def default_model_name() -> str:
    """``NAPARI_MOBILESAM_MODEL`` when set (checked), else ``"mobile_sam"``."""
    name = os.environ.get(MODEL_ENV, "").strip()
    if not name:
        return DEFAULT_MODEL
    if name not in MODELS:
        raise MobileSAMError(
            f"{MODEL_ENV}={name!r} is not a model napari-mobilesam knows; set it to one of "
            f"{', '.join(MODELS)}, or unset it for {DEFAULT_MODEL}."
        )
    return name


def model_spec(name: str | None = None, *, option: str = "model") -> ModelSpec:
    """The :class:`ModelSpec` called ``name`` (None: :func:`default_model_name`), or one error naming the known ones."""
    if name is None:
        return MODELS[default_model_name()]
    spec = MODELS.get(name) if isinstance(name, str) else None
    if spec is None:
        known = "; ".join(f"{key} ({value.description})" for key, value in MODELS.items())
        raise MobileSAMError(f"{option}={name!r} is not a model napari-mobilesam knows; choose one of: {known}.")
    return spec


def no_decoder_error(sampler: str, model_name: str | None) -> MobileSAMError:
    """The one error for ``sampler`` ``"ais"``/``"apg"`` on a model without an instance decoder."""
    which = f"the model {model_name!r}" if model_name else "this model"
    return MobileSAMError(
        f"The {sampler!r} sampler needs an instance decoder, and {which} has none; use a model that has one, "
        f"{' or '.join(models_with_decoder())} (load_model(model=...), --model, or the widget's Model picker), "
        "or the 'grid' or 'boxes' sampler."
    )
