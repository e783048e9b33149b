"""Files in and out of the command-line tool: images, labels, prompt tables, resumable work.

This module names, in one place, what the tool's three file modules provide:

- **input** (:mod:`napari_mobilesam.image_input`): a TIFF (read with
  ``tifffile``; memory-mapped when uncompressed) or a zarr array (a path to
  the array, or to a group plus ``array=`` the array's path inside it; an
  OME-Zarr multiscale group gives its full resolution). Lazy arrays stay
  lazy: slices are read one at a time.
- **output** (:mod:`napari_mobilesam.label_files`): labels as a TIFF
  (``.tif``/``.tiff``) or a zarr array (``.zarr``, one chunk per 2D slice).
  Outputs are written under a temporary name in the same folder and renamed
  into place only when complete, so an interrupted run never leaves a
  half-written output.
- **resume** (:mod:`napari_mobilesam.slice_store`): :class:`SliceStore`, the
  work folder ``<OUTPUT>.partial`` where finished slices wait, each with a
  "done" marker, until the output is written.

Prompt tables (napari's Points and Shapes CSV files) are read by
:mod:`napari_mobilesam.prompt_tables`.
"""

from .image_input import TIFF_SUFFIXES, ZARR_SUFFIX, InputImage, file_image_id, read_image
from .label_files import check_output, output_format, read_labels, write_labels
from .slice_store import PARTIAL_SUFFIX, SliceStore

__all__ = [
    "PARTIAL_SUFFIX",
    "TIFF_SUFFIXES",
    "ZARR_SUFFIX",
    "InputImage",
    "SliceStore",
    "check_output",
    "file_image_id",
    "output_format",
    "read_image",
    "read_labels",
    "write_labels",
]

# doctest collects only the functions defined in a module; list the re-exported
# ones with examples so that running this module's doctests still runs them.
__test__ = {"read_image": read_image, "write_labels": write_labels}
