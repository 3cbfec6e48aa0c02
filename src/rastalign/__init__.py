"""rastalign: align a moving raster onto a reference, for scenes of any size, in memory or on Dask.

Conventions: a model maps an **output pixel to a moving pixel** (a pull map), in
``(x, y)`` order, with pixel centres at integer coordinates (0-based).
"""
__version__ = "0.1.0"

from .errors import AlignmentError, InputError, OutputError, OverlapError, QualityError, RastalignError
from .model import AlignmentModel
from .pipeline import AlignmentResult, Estimate, align_image_pair, apply, estimate
from .io.fits import open_fits
from .astro import FitsAligner, Spalipy, align_fits, estimate_fits
from . import accessor  # noqa: F401,E402 - registers the xarray accessor ``coreg``

__all__ = ["AlignmentError", "AlignmentModel", "AlignmentResult", "Estimate", "InputError", "OutputError",
           "OverlapError", "QualityError", "RastalignError", "__version__", "align_image_pair", "apply", "estimate",
           "open_fits", "FitsAligner", "Spalipy", "align_fits", "estimate_fits"]
