"""``--correction georef``: the correction written as a georeference, the moving pixels untouched.

Resampling changes pixel values; often the analyst wants the correction, not new pixels (AROSICS'
default for a pure shift). When the model is affine on the moving grid (its residual field departs
from the affine by at most :data:`TOLERANCE_PX` anywhere on the grid), the aligned image is the
moving file itself with a new geotransform: moving pixel ``m`` lands where output pixel
``inv(A) m`` lies, so ``pixel_to_world' = pixel_to_world o inv(A)``. The file is copied byte for
byte (every band, dtype, nodata, mask, tag and overview) under a temporary name, its geotransform
rewritten in place, verified and renamed. A model that needs its field is written as a dense grid
of GCPs when GDAL's thin-plate-spline transformer reproduces it, else refused in one line naming
``--correction resample``. A ``.vrt`` output references the moving file instead of copying it.
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from rastalign.errors import InputError, OutputError
from rastalign.sinks.atomic import discard, temp_path_beside
from rastalign.sinks.carried import Carried, tags
from rastalign.geometry.affine import apply_affine, compose_affine, geotransform, invert_affine
from rastalign.io.raster import gdal_warnings

TOLERANCE_PX = 0.01  # a geotransform holds the model when its field departs from the affine by less
GCP_TOLERANCE_PX = 0.05  # GCPs hold it when GDAL's thin-plate spline through them reproduces it this well


def corrected_transform(model, mov) -> tuple:
    """GDAL geotransform of the moving grid once corrected by the affine part of ``model`` (output px of
    the moving grid -> moving px)."""
    return geotransform(compose_affine(mov.pixel_to_world, invert_affine(model.linear)))  # moving px -> world


def model_gcps(model, mov, n=33):
    """The model as an ``n x n`` grid of GCPs over the moving frame: each moving pixel's corrected world
    position (the output pixel the model sends onto it, through the moving grid's georeference)."""
    from rasterio.control import GroundControlPoint

    ny, nx = mov.shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    ox, oy = model.inverse_points(gx.ravel(), gy.ravel())
    wx, wy = apply_affine(mov.pixel_to_world, ox, oy)
    # GDAL's GCP pixel/line count from the image corner: a pixel centre is at +0.5
    return [GroundControlPoint(row=float(r) + 0.5, col=float(c) + 0.5, x=float(x), y=float(y), id=str(i))
            for i, (c, r, x, y) in enumerate(zip(gx.ravel(), gy.ravel(), wx, wy))]


def gcp_error_px(gcps, model, mov, n=24):
    """Largest distance (moving px) between the model and GDAL's thin-plate-spline GCP transformer at
    points between the GCPs (cell centres of an offset grid)."""
    from rasterio.transform import GCPTransformer

    ny, nx = mov.shape
    gx, gy = np.meshgrid(np.linspace(7.3, nx - 8.1, n), np.linspace(5.9, ny - 6.7, n))  # off the GCP grid
    ox, oy = model.inverse_points(gx.ravel(), gy.ravel())
    want = np.column_stack(apply_affine(mov.pixel_to_world, ox, oy))
    with GCPTransformer(gcps, tps=True) as t:
        got = np.column_stack(t.xy(gy.ravel(), gx.ravel(), offset="center"))
    return float(np.hypot(*(got - want).T).max() / mov.resolution)


def write_georef(moving_path, model, mov, output_path) -> dict:
    """Write the moving pixels with the correction as their georeference at ``output_path``: a GeoTIFF
    copy of the moving file, or a ``.vrt`` referencing it (nothing copied). An affine model (to
    :data:`TOLERANCE_PX`) becomes a corrected geotransform; a model with a residual field becomes a dense
    grid of GCPs (with the CRS) when GDAL's thin-plate-spline transformer reproduces it to
    :data:`GCP_TOLERANCE_PX` (warp with ``gdalwarp -tps -et 0``: GDAL's default error threshold of 0.125 px
    approximates the transformer, which costs about 0.2 px); otherwise it is refused in one line."""
    import rasterio
    from affine import Affine

    departure = model.field_max_px(mov.shape)
    gcps, transform, gcp_err = None, None, None
    if departure > TOLERANCE_PX:
        gcps = model_gcps(model, mov)
        gcp_err = gcp_error_px(gcps, model, mov)
        if gcp_err > GCP_TOLERANCE_PX:
            raise InputError(f"the residual field departs from an affine by up to {departure:.3f} px and GCPs "
                             f"reproduce it only to {gcp_err:.3f} px (more than {GCP_TOLERANCE_PX} px): a "
                             f"georeference cannot hold it; use --correction resample")
    else:
        transform = corrected_transform(model, mov)
    vrt = str(output_path).lower().endswith(".vrt")
    tmp = temp_path_beside(output_path, ".vrt" if vrt else ".tif")
    try:
        import rasterio.shutil

        with rasterio.open(moving_path) as src:
            driver = src.driver
        if vrt:  # the VRT references the moving file by its absolute path: nothing is copied
            rasterio.shutil.copy(os.path.abspath(moving_path), tmp, driver="VRT")
        elif driver == "GTiff":
            shutil.copyfile(moving_path, tmp)  # every byte: pixels, masks, tags, overviews
        else:
            rasterio.shutil.copy(moving_path, tmp, driver="GTiff", COPY_SRC_OVERVIEWS="YES", TILED="YES",
                                 COMPRESS="DEFLATE")
        with rasterio.open(tmp, "r+") as ds:
            if gcps is not None:
                with gdal_warnings():  # GDAL says the geotransform gives way to the GCPs: that is the point
                    ds.gcps = (gcps, ds.crs)
            else:
                ds.transform = Affine(*transform)
            ds.update_tags(RASTALIGN_CORRECTION="georef", **tags(Carried(model=model.to_json(indent=None))),
                           **({"RASTALIGN_GCP_TRANSFORMER": "TPS (gdalwarp -tps -et 0)"} if gcps is not None else {}))
        with rasterio.open(tmp) as ds:
            took = len(ds.gcps[0]) == len(gcps) if gcps is not None else np.allclose(
                tuple(ds.transform)[:6], transform, rtol=0, atol=1e-9 * max(map(abs, transform)))
            if not took:
                raise OutputError(f"cannot write output {output_path}: the georeference did not take")
        os.replace(tmp, output_path)
    except OSError as exc:
        raise OutputError(f"cannot write output {output_path}: {exc.strerror or exc}") from None
    finally:
        discard(tmp)
    kind = "geotransform" if gcps is None else f"{len(gcps)} GCPs (thin-plate spline, exact: gdalwarp -tps -et 0)"
    return {"format": "VRT" if vrt else "GTiff", "correction": "georef", "georeference": kind,
            "transform": None if transform is None else list(transform), "max_departure_px": departure,
            "gcp_max_error_px": gcp_err, "warp_write_s": 0.0}


def check_georef_output(path, output, rest):
    """``--correction georef`` keeps the moving pixels on the moving grid: a GeoTIFF or a ``.vrt``; ``rest``: the
    other options (no other grid)."""
    from rastalign.params import output_format_for

    vrt = str(path).lower().endswith(".vrt")
    fmt = None if vrt and output.output_format is None else output_format_for(path, output.output_format)
    if (fmt not in (None, "GTiff")) or "://" in str(path) or not output.output_on_moving_grid or \
            any(rest.get(k) for k in ("like", "output_crs", "output_resolution")):
        raise InputError("--correction georef keeps the moving pixels on the moving grid and writes a local GeoTIFF "
                         "or .vrt: drop --like/--output-crs/--output-resolution/--no-output-on-moving-grid and "
                         "--output-format")
