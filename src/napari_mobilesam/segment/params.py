"""The settings of automatic segmentation, each declared once with its type, range and help.

- :class:`EverythingParams`: segment everything (the sampler, and SAM's names and defaults);
- :class:`~napari_mobilesam.segment.instance_params.WatershedParams` and
  :class:`~napari_mobilesam.segment.instance_params.APGParams`: the ``"ais"`` and
  ``"apg"`` samplers' (micro-sam's names and defaults); :func:`sampler_settings`
  takes one set of keyword arguments apart into the sampler's settings;
- :class:`LinkParams`: how a stack's slices are joined into 3D objects.

Every field is a :func:`~napari_mobilesam.segment.param_fields.setting`: its
metadata keys ``help``, ``min``, ``max``, ``min_open``, ``max_open``,
``step`` and ``choices`` (see :mod:`napari_mobilesam.segment.param_fields`)
are what the API checks, what the command line's options and ``--help`` are
made from, and what a GUI reads for its ranges and tooltips; so the Python
API, the command line, the widget and dask workers accept the same values.

Plain data (numpy only, no torch): the command line and the GUI build and
check them without loading the pipeline of :mod:`napari_mobilesam.segment.everything`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import MobileSAMError
from .instance_params import MODEL_DEFAULTS, APGParams, WatershedParams
from .param_fields import check_settings, from_kwargs, setting

#: The samplers that need the model's instance decoder (micro-sam's AIS and APG).
INSTANCE_SAMPLERS = ("ais", "apg")
SAMPLERS = ("grid", "boxes", *INSTANCE_SAMPLERS)
#: The settings of each instance sampler.
INSTANCE_SETTINGS = {"ais": WatershedParams, "apg": APGParams}


@dataclass(frozen=True)
class EverythingParams:
    """Settings of :func:`~napari_mobilesam.segment.everything.segment_everything`; names and defaults are those of SAM's generator.

    Attributes:
        sampler: ``"grid"`` (SAM's point grid), ``"boxes"`` (box proposals, MobileSAMv2),
            ``"ais"`` or ``"apg"`` (micro-sam's instance decoder; their settings are
            :class:`~napari_mobilesam.segment.instance_params.WatershedParams` and
            :class:`~napari_mobilesam.segment.instance_params.APGParams`).
        points_per_side: the grid sampler prompts ``points_per_side**2`` points.
        points_per_batch: point prompts decoded together.
        pred_iou_thresh: keep masks whose predicted IoU is above this.
        stability_score_thresh: keep masks whose stability score is at least this.
        stability_score_offset: the logit offset of the stability score
            (see :func:`~napari_mobilesam.segment.everything.stability_score`).
        box_nms_thresh: masks whose boxes overlap a better mask's by more than this IoU are dropped.
        min_mask_region_area: > 0: fill holes and remove islands smaller than this
            many pixels in each mask, and drop labels left with fewer visible pixels.
        boxes_per_batch: box prompts decoded together (``"boxes"`` sampler; MobileSAMv2
            uses 320 on a GPU, the memory grows with it).
    """

    sampler: str = setting(
        "grid",
        choices=SAMPLERS,
        help="prompts: a regular grid of points, or boxes proposed from the image; ais, apg: micro-sam's "
        "instance decoder (a model that has one)",
    )
    # 1024 per side is a million prompts, hours on a CPU: more is a typo, not a setting.
    points_per_side: int = setting(32, min=1, max=1024, help="points along each side of the prompt grid (the grid sampler)")
    points_per_batch: int = setting(64, min=1, help="point prompts decoded together; more is faster and takes more memory")
    pred_iou_thresh: float = setting(
        0.88, min=0.0, max=1.0, step=0.01, help="keep masks whose predicted IoU is above this"
    )
    stability_score_thresh: float = setting(
        0.95, min=0.0, max=1.0, step=0.01, help="keep masks at least this stable under threshold changes"
    )
    # Negative offsets would swap the two masks of the stability score (see everything.stability_score).
    stability_score_offset: float = setting(
        1.0, min=0.0, step=0.1, help="threshold shift of the stability score, in logits"
    )
    box_nms_thresh: float = setting(
        0.7, min=0.0, max=1.0, min_open=True, step=0.01, help="IoU above which overlapping masks are duplicates"
    )
    min_mask_region_area: int = setting(
        0, min=0, help="fill holes and remove islands smaller than this many pixels in each mask; 0 turns it off"
    )
    boxes_per_batch: int = setting(64, min=1, help="box prompts decoded together by the boxes sampler")

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def from_kwargs(cls, **params) -> EverythingParams:
        """Build from keyword arguments, with one clear error for a name SAM's generator does not use here."""
        return from_kwargs(cls, "segment_everything", params)

    def kwargs(self) -> dict:
        """Every setting but the sampler, as keyword arguments of ``segment_everything`` (besides ``sampler=``)."""
        params = asdict(self)
        del params["sampler"]
        return params


def _names(cls) -> set[str]:
    return {item.name for item in fields(cls)}


def sampler_settings(sampler: str, params: dict):
    """``(EverythingParams, instance settings or None)`` of ``sampler`` from keyword arguments ``params``.

    ``"grid"``/``"boxes"`` take :class:`EverythingParams`' settings, ``"ais"``
    :class:`WatershedParams`' and ``"apg"`` :class:`APGParams`'. A setting of
    another sampler is one error saying whose it is; an unknown one, one error
    listing the known ones.
    """
    EverythingParams(sampler=sampler)  # a sampler that does not exist: the error naming the choices
    own_cls = INSTANCE_SETTINGS.get(sampler, EverythingParams)
    own = _names(own_cls) - {"sampler"}
    owners: dict[str, list[str]] = {}
    for key, cls in (("grid, boxes", EverythingParams), *INSTANCE_SETTINGS.items()):
        for name in _names(cls) - {"sampler"}:
            owners.setdefault(name, []).append(key)
    foreign = sorted(name for name in params if name not in own and name in owners)
    if foreign:
        whose = ", ".join(f"{name} (a setting of {', '.join(owners[name])})" for name in foreign)
        raise MobileSAMError(
            f"{whose}: not one of sampler={sampler!r}, whose settings are {', '.join(sorted(own))}; "
            "leave it out or choose its sampler."
        )
    if own_cls is EverythingParams:
        return EverythingParams.from_kwargs(sampler=sampler, **params), None
    return EverythingParams(sampler=sampler), own_cls.from_kwargs(**params)


def settings_for_model(sampler: str, model_name: str | None, **params):
    """The settings of instance sampler ``sampler`` with ``model_name``'s defaults (micro-sam's annotator's),
    ``params`` on top: what the widget and the command line start from (the API keeps ``generate()``'s)."""
    cls = INSTANCE_SETTINGS[sampler]
    defaults = MODEL_DEFAULTS.get(model_name, {}) if cls is WatershedParams else {}
    return cls.from_kwargs(**{**defaults, **params})


@dataclass(frozen=True)
class LinkParams:
    """How :func:`~napari_mobilesam.segment_stack` (and the command line, and the widget) join slices into 3D objects.

    Attributes:
        link_3d: give an object that continues on the next z-slice one id.
        link_iou: the least IoU of two masks on adjacent z-slices for them to be one object.
    """

    link_3d: bool = setting(True, help="give an object that continues on the next z-slice one id")
    link_iou: float = setting(
        0.5, min=0.0, max=1.0, step=0.05, help="least IoU of two masks on adjacent z-slices to link them"
    )

    def __post_init__(self) -> None:
        check_settings(self)
