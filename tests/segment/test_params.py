"""Settings declared once: the fields' metadata is what the API checks and what the command line offers."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

import numpy as np
import pytest

from napari_mobilesam.cli.parser import add_settings, settings_from_args
from napari_mobilesam.errors import MobileSAMError
from napari_mobilesam.segment.param_fields import METADATA_KEYS, check_settings, describe_range, setting, setting_types
from napari_mobilesam.segment.params import EverythingParams, LinkParams

SETTINGS = (EverythingParams, LinkParams)


@pytest.mark.parametrize("cls", SETTINGS)
def test_every_setting_declares_help_and_a_range(cls):
    """What a GUI reads: help for every field, a lower bound for every number, only the documented keys."""
    for item in fields(cls):
        kind, _ = setting_types(cls)[item.name]
        assert item.metadata["help"] and set(item.metadata) <= set(METADATA_KEYS)
        if kind in (int, float):
            assert "min" in item.metadata, item.name
        if kind is float and "max" in item.metadata:
            assert "step" in item.metadata, item.name
    cls()  # the defaults are valid


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (EverythingParams, {"pred_iou_thresh": 5}, r"pred_iou_thresh must be in \[0, 1\], got 5"),
        (EverythingParams, {"pred_iou_thresh": 1.01}, r"pred_iou_thresh must be in \[0, 1\]"),
        (EverythingParams, {"stability_score_thresh": -4}, r"stability_score_thresh must be in \[0, 1\]"),
        (EverythingParams, {"stability_score_offset": -1.0}, "stability_score_offset must be >= 0"),
        (EverythingParams, {"box_nms_thresh": 0.0}, r"box_nms_thresh must be in \(0, 1\]"),
        (EverythingParams, {"points_per_side": 0}, "points_per_side must be a whole number from 1 to 1024"),
        (EverythingParams, {"points_per_side": 100_000}, "points_per_side must be a whole number from 1 to 1024"),
        (EverythingParams, {"points_per_batch": True}, "points_per_batch must be a whole number >= 1"),
        (EverythingParams, {"min_mask_region_area": 2.5}, "min_mask_region_area must be a whole number >= 0"),
        (EverythingParams, {"pred_iou_thresh": float("nan")}, "pred_iou_thresh must be a finite number in"),
        (EverythingParams, {"pred_iou_thresh": "0.5"}, "pred_iou_thresh must be a finite number in"),
        (EverythingParams, {"sampler": "dots"}, "sampler must be one of 'grid', 'boxes'"),
        (LinkParams, {"link_iou": -1}, r"link_iou must be in \[0, 1\], got -1"),
        (LinkParams, {"link_3d": "no"}, "link_3d must be True or False"),
    ],
)
def test_out_of_range_is_one_clear_error(cls, values, message):
    with pytest.raises(MobileSAMError, match=message) as error:
        cls(**values)
    assert str(error.value).endswith(".")  # the value given, then what the setting does


def test_segment_everything_refuses_what_the_command_line_refuses():
    from napari_mobilesam.segment.everything import segment_everything

    def never(*_):
        raise AssertionError("decoded despite a bad setting")

    with pytest.raises(MobileSAMError, match="pred_iou_thresh"):
        segment_everything(np.zeros((8, 8)), decoder=never, pred_iou_thresh=5)


def test_numbers_are_stored_as_python_numbers():
    params = EverythingParams(points_per_side=np.int64(4), pred_iou_thresh=np.float32(0.5), box_nms_thresh=1)
    assert type(params.points_per_side) is int and type(params.pred_iou_thresh) is float
    assert type(params.box_nms_thresh) is float
    assert LinkParams(link_3d=np.bool_(False)).link_3d is False


def test_optional_settings_and_ranges_in_words():
    @dataclass(frozen=True)
    class Example:
        threshold: float | None = setting(None, min=0.0, max=1.0, max_open=True, help="a threshold")
        count: int = setting(3, max=5, help="a count")

        def __post_init__(self):
            check_settings(self, owner="Example: ")

    Example(threshold=0.5)
    with pytest.raises(MobileSAMError, match=r"Example: threshold must be in \[0, 1\) \(or None\), got 1.0"):
        Example(threshold=1.0)
    with pytest.raises(MobileSAMError, match="count must be a whole number <= 5"):
        Example(count=6)
    assert describe_range(float, {"min": 0, "min_open": True}) == "> 0"
    with pytest.raises(TypeError, match="unknown setting metadata"):
        setting(1, help="x", minimum=0)


def test_command_line_options_are_made_from_the_fields():
    parser = argparse.ArgumentParser()
    add_settings(parser, EverythingParams)
    add_settings(parser, LinkParams, defaults={"link_3d": False})
    args = parser.parse_args([])
    assert settings_from_args(EverythingParams, args) == EverythingParams()
    assert settings_from_args(LinkParams, args) == LinkParams(link_3d=False)
    args = parser.parse_args(["--points-per-side", "4", "--sampler", "boxes", "--link-3d", "--link-iou", "0.3"])
    assert settings_from_args(EverythingParams, args) == EverythingParams(sampler="boxes", points_per_side=4)
    assert settings_from_args(LinkParams, args) == LinkParams(link_iou=0.3)
    with pytest.raises(MobileSAMError, match=r"^--pred-iou-thresh must be in \[0, 1\], got 2.0"):
        settings_from_args(EverythingParams, parser.parse_args(["--pred-iou-thresh", "2"]))
    text = parser.format_help()
    for item in (*fields(EverythingParams), *fields(LinkParams)):
        assert "--" + item.name.replace("_", "-") in text
    assert "default: 32" in text and "default: 0.88" in text and "default: off" in text
