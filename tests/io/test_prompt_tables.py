"""napari's Points and Shapes CSV tables as prompts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mobilesam.errors import MobileSAMError
from napari_mobilesam.io.prompt_tables import read_boxes_csv, read_points_csv

# -- prompt tables --------------------------------------------------------------------


def test_points_written_by_napari(tmp_path):
    from napari.layers import Points
    from napari_builtins.io._write import napari_write_points

    layer = Points(np.array([[1, 20, 30], [0, 5, 5.5]]), features={"positive": [True, False]})
    napari_write_points(str(tmp_path / "points.csv"), layer.data, layer._get_state())
    points, labels = read_points_csv(tmp_path / "points.csv", ndim=3)
    np.testing.assert_array_equal(points, [[1, 20, 30], [0, 5, 5.5]])
    assert labels.tolist() == [1, 0]
    with pytest.raises(MobileSAMError, match="3 coordinate columns .* 2 axes"):
        read_points_csv(tmp_path / "points.csv", ndim=2)


@pytest.mark.parametrize(
    ("table", "labels"),
    [
        ("z,y,x\n0,1,2\n1,3,4\n", [1, 1]),
        ("z,y,x,label\n0,1,2,positive\n1,3,4,negative\n", [1, 0]),
        ("index,axis-0,axis-1,axis-2,label\n0,0,1,2,1\n1,1,3,4,0\n", [1, 0]),
    ],
)
def test_points_tables(tmp_path, table, labels):
    (tmp_path / "p.csv").write_text(table)
    points, polarity = read_points_csv(tmp_path / "p.csv", ndim=3)
    np.testing.assert_array_equal(points, [[0, 1, 2], [1, 3, 4]])
    assert polarity.tolist() == labels


def test_bad_points_tables(tmp_path):
    (tmp_path / "p.csv").write_text("z,y,x,label\n0,1,2,maybe\n")
    with pytest.raises(MobileSAMError, match="row 2: cannot tell"):
        read_points_csv(tmp_path / "p.csv", ndim=3)
    (tmp_path / "q.csv").write_text("a,b\n1,2\n")
    with pytest.raises(MobileSAMError, match="no coordinate columns"):
        read_points_csv(tmp_path / "q.csv", ndim=3)
    with pytest.raises(MobileSAMError, match="does not exist"):
        read_points_csv(tmp_path / "missing.csv", ndim=3)


def test_boxes_written_by_napari_and_plain(tmp_path):
    from napari.layers import Shapes
    from napari_builtins.io._write import napari_write_shapes

    rectangle = np.array([[1, 10, 12], [1, 10, 30], [1, 40, 30], [1, 40, 12]])
    layer = Shapes([rectangle], shape_type="rectangle")
    napari_write_shapes(str(tmp_path / "shapes.csv"), layer.data, layer._get_state())
    np.testing.assert_array_equal(read_boxes_csv(tmp_path / "shapes.csv", ndim=3), [[1, 10, 12, 40, 30]])
    (tmp_path / "boxes.csv").write_text("z,y0,x0,y1,x1\n2,1,2,3,4\n")
    np.testing.assert_array_equal(read_boxes_csv(tmp_path / "boxes.csv", ndim=3), [[2, 1, 2, 3, 4]])
    (tmp_path / "bad.csv").write_text("z,top,left\n1,2,3\n")
    with pytest.raises(MobileSAMError, match="not a boxes table"):
        read_boxes_csv(tmp_path / "bad.csv", ndim=3)
