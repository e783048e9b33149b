"""napari and Qt: the MobileSAM dock widget and what it needs. Nothing outside this package imports it."""
