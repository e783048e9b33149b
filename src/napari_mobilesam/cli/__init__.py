"""The ``napari-mobilesam`` command line."""
