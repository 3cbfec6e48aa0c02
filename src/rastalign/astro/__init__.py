"""Astronomy: align FITS frames (or arrays, or detection tables) by their stars.

Pipeline: detections (``sep`` per chunk, or tables / SExtractor catalogues) -> spalipy's
filters -> quad matching -> robust full affine -> regularised residual field -> warp onto
the **template grid** chunk by chunk -> FITS written under a temporary name and renamed.

- :mod:`.fit`: filters, matching and the model fit (``fit_detections``)
- :mod:`.files`: FITS in, FITS out (``estimate_fits``, ``align_fits``)
- :mod:`.spalipy`: spalipy's class for in-memory arrays (``Spalipy``)
"""
from rastalign.astro.files import align_fits, estimate_fits, template_stars
from rastalign.astro.fit import DEFAULTS, fit_detections, log_stats, resampling_for
from rastalign.astro.spalipy import Spalipy
from rastalign.astro.spalipy_transform import AffineTransform

__all__ = ["AffineTransform", "DEFAULTS", "Spalipy", "align_fits", "estimate_fits", "fit_detections", "log_stats",
           "resampling_for", "template_stars"]
