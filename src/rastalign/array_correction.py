"""The accessor's corrections without resampling: ``correction="georef"`` for raster arrays and
``"wcs"`` for FITS arrays return the moving array itself (lazy, every pixel untouched) with its
georeference corrected, as ``--correction georef`` / ``--correction wcs`` do for files."""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from .errors import InputError


def corrected(moving, model, correction, fits, reference=None):
    """``moving`` with the correction of ``model`` (output px -> moving px, as the accessor estimates it)
    in its georeference: a corrected transform (rasters) or a WCS with SIP (FITS arrays)."""
    from .accessor import grid_info

    info = grid_info(moving)
    if fits:
        if correction != "wcs":
            raise InputError(f"FITS arrays take correction='resample' or 'wcs'; got {correction!r}")
        from astropy.io import fits as pyfits

        from .astro.wcs_correction import fit_wcs
        from .io.fits import wcs_of

        header = model.meta.get("grids", {}).get("wcs")
        template = None if not header else wcs_of(pyfits.Header.fromstring(header))
        # the estimate's own frame: template px -> source px (the accessor may have rebased it onto the moving grid)
        shape = None if reference is None else grid_info(reference).shape
        base = dataclasses.replace(model, pre=np.eye(3)[:2], output_shape=shape)
        wcs, stats = fit_wcs(base, info.shape, template)
        out = moving.copy(deep=False)
        out.attrs = dict(moving.attrs, wcs=wcs, rastalign_correction=json.dumps(dict(stats, correction="wcs")))
        return out
    if correction != "georef":
        raise InputError(f"raster arrays take correction='resample' or 'georef'; got {correction!r}")
    from affine import Affine

    from .georef import TOLERANCE_PX, corrected_transform

    departure = model.field_max_px(info.shape)
    if departure > TOLERANCE_PX:
        raise InputError(f"the residual field departs from an affine by up to {departure:.3f} px: an array's "
                         f"transform cannot hold it; use correction='resample' (or GCPs: vhr-align-image-pair "
                         f"--correction georef)")
    a, b, c, d, e, f = corrected_transform(model, info)
    ydim, xdim = moving.rio.y_dim, moving.rio.x_dim
    out = moving.assign_coords({xdim: c + a * (np.arange(info.shape[1]) + 0.5),
                                ydim: f + e * (np.arange(info.shape[0]) + 0.5)})
    out = out.rio.write_transform(Affine(a, b, c, d, e, f))
    out.attrs["rastalign_correction"] = json.dumps({"correction": "georef", "max_departure_px": departure})
    return out
