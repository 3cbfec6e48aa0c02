"""``--correction georef``: the correction written as a georeference, the moving pixels untouched.

Resampling changes pixel values; often the analyst wants the correction, not new pixels (AROSICS'
default for a pure shift). When the model is affine on the moving grid (its residual field departs
from the affine by at most :data:`TOLERANCE_PX` anywhere on the grid), the aligned image is the
moving file itself with a new geotransform: moving pixel ``m`` lands where output pixel
``inv(A) m`` lies, so ``pixel_to_world' = pixel_to_world o inv(A)``. The file is copied byte for
byte (every band, dtype, nodata, mask, tag and overview) under a temporary name, its geotransform
rewritten in place, verified and renamed. A model that needs its field is refused in one line
naming ``--correction resample``.
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from .errors import InputError, OutputError
from .io.atomic import discard, temp_path_beside
from .model.affine import compose_affine, invert_affine

TOLERANCE_PX = 0.01


def corrected_transform(model, mov) -> tuple:
    """GDAL geotransform of the moving grid once corrected by the affine part of ``model`` (output px of
    the moving grid -> moving px)."""
    w = compose_affine(mov.pixel_to_world, invert_affine(model.linear))  # moving px (centres) -> world
    a, b, cc = w[0]
    d, e, ff = w[1]
    return (float(a), float(b), float(cc - 0.5 * (a + b)), float(d), float(e), float(ff - 0.5 * (d + e)))


def write_georef(moving_path, model, mov, output_path) -> dict:
    """Write the moving file with the corrected geotransform at ``output_path`` (GeoTIFF); returns stats."""
    import rasterio
    from affine import Affine

    departure = model.field_max_px(mov.shape)
    if departure > TOLERANCE_PX:
        raise InputError(f"the residual field departs from an affine by up to {departure:.3f} px (more than "
                         f"{TOLERANCE_PX} px): a georeference cannot hold it; use --correction resample")
    transform = corrected_transform(model, mov)
    tmp = temp_path_beside(output_path, ".tif")
    try:
        with rasterio.open(moving_path) as src:
            driver = src.driver
        if driver == "GTiff":
            shutil.copyfile(moving_path, tmp)  # every byte: pixels, masks, tags, overviews
        else:
            import rasterio.shutil

            rasterio.shutil.copy(moving_path, tmp, driver="GTiff", COPY_SRC_OVERVIEWS="YES", TILED="YES",
                                 COMPRESS="DEFLATE")
        with rasterio.open(tmp, "r+") as ds:
            ds.transform = Affine(*transform)
            ds.update_tags(RASTALIGN_CORRECTION="georef", RASTALIGN_MODEL=model.to_json(indent=None)[:30000])
        with rasterio.open(tmp) as ds:
            if not np.allclose(tuple(ds.transform)[:6], transform, rtol=0, atol=1e-9 * max(map(abs, transform))):
                raise OutputError(f"cannot write output {output_path}: the geotransform did not take")
        os.replace(tmp, output_path)
    except OSError as exc:
        raise OutputError(f"cannot write output {output_path}: {exc.strerror or exc}") from None
    finally:
        discard(tmp)
    return {"format": "GTiff", "correction": "georef", "transform": list(transform),
            "max_departure_px": departure, "warp_write_s": 0.0}
