"""Segment everything with micro-sam's instance decoder: the ``"ais"`` and ``"apg"`` samplers.

One image: its embedding (encoded when not given), the decoder's three maps
(:func:`~napari_mobilesam.segment.instance_maps.instance_maps`, computed when not
given -- a stack takes them from the embedding cache), then

- ``"ais"``: the seeded watershed on the maps (:func:`~napari_mobilesam.segment.instance_watershed.watershed_from_maps`);
- ``"apg"``: one point prompt per seed, decoded by SAM in batches, NMS
  (:func:`~napari_mobilesam.segment.apg.apg_steps`).

The decoder is the model's ``instance_decoder`` (:func:`~napari_mobilesam.load_model`
attaches it); a model without one is one error naming the models that have one.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..engine.model_registry import no_decoder_error


def instance_decoder_of(model, sampler: str):
    """``model.instance_decoder``, or the error for ``sampler`` on a model without one."""
    decoder = getattr(model, "instance_decoder", None)
    if decoder is None:
        raise no_decoder_error(sampler, getattr(model, "model_name", None))
    return decoder


def instance_steps(
    sampler: str,
    settings,
    predictor,
    *,
    embedding=None,
    image=None,
    contrast_limits: tuple[float, float] | None = None,
    maps: np.ndarray | None = None,
    decoder=None,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Generator: AIS or APG on one image; yields ``(steps done, steps in total)``, returns ``(H, W)`` int32 labels.

    ``settings``: :class:`~napari_mobilesam.segment.instance_params.WatershedParams`
    (``"ais"``) or :class:`~napari_mobilesam.segment.instance_params.APGParams`
    (``"apg"``). ``image`` is encoded with ``predictor`` when there is no
    ``embedding``; ``maps`` ``(3, H, W)`` are computed with the model's decoder
    when not given. ``decoder``: a stand-in for SAM's decoding (APG), with the
    contract of :meth:`~napari_mobilesam.engine.predictor.Predictor.decode_low_res`.
    """
    from .apg import apg_steps
    from .instance_maps import instance_maps
    from .instance_watershed import watershed_from_maps

    instance_decoder = instance_decoder_of(predictor.model, sampler) if maps is None else None
    done, total = 0, int(embedding is None) + int(maps is None) + 1
    if embedding is None:
        yield done, total
        embedding = predictor.set_image(image, contrast_limits)
        done += 1
    if maps is None:
        yield done, total
        maps = instance_maps(embedding, instance_decoder)
        done += 1
    if sampler == "ais":
        yield done, total
        labels = watershed_from_maps(maps, settings)
        yield total, total
        return labels
    steps = apg_steps(embedding, maps, None if decoder is not None else predictor, decoder=decoder, params=settings)
    while True:
        try:
            step, steps_total = next(steps)
        except StopIteration as finished:
            return finished.value
        yield done + step, done + steps_total
