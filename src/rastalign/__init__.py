"""rastalign: align a moving raster onto a reference, for scenes of any size, in memory or on Dask.

Conventions: a model maps an **output pixel to a moving pixel** (a pull map), in
``(x, y)`` order, with pixel centres at integer coordinates (0-based).
"""
__version__ = "0.1.0"

from .errors import AlignmentError, InputError, OutputError, OverlapError, QualityError, RastalignError
from .model import AlignmentModel
from .pipeline import AlignmentResult, Estimate, align_image_pair, apply, estimate
from . import accessor  # noqa: F401,E402 - registers the xarray accessor ``coreg``

_LAZY = {"open_fits": "io.fits", "FitsAligner": "astro", "Spalipy": "astro", "align_fits": "astro",
         "estimate_fits": "astro"}


def __getattr__(name):
    """The astronomy API imports astropy on first use, so the raster CLI starts faster."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rastalign' has no attribute {name!r}")

__all__ = ["AlignmentError", "AlignmentModel", "AlignmentResult", "Estimate", "InputError", "OutputError",
           "OverlapError", "QualityError", "RastalignError", "__version__", "align_image_pair", "apply", "estimate",
           "open_fits", "FitsAligner", "Spalipy", "align_fits", "estimate_fits"]
