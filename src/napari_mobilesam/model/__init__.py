"""MobileSAM as plain PyTorch modules: no I/O, inference only.

The module tree and parameter names mirror the official checkpoint so that
``mobile_sam.pt`` loads with ``strict=True``.
"""

from .mobile_sam import MobileSAM, build_mobile_sam

__all__ = ["MobileSAM", "build_mobile_sam"]
