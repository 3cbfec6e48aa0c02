"""Grid relations between the fixed, moving and output rasters (same CRS).

Everything is expressed with 2x3 pixel->world matrices of pixel *centres*, so the
relation between two grids is one affine: ``moving px -> fixed px`` =
``inv(W_fixed) o W_moving``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError, OverlapError
from .model.affine import apply_affine, compose_affine, invert_affine


def same_crs(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    from rasterio.crs import CRS

    return CRS.from_wkt(a) == CRS.from_wkt(b)


def check_crs(moving, fixed):
    if not same_crs(moving.crs, fixed.crs):
        def name(info):
            if info.crs is None:
                return "none"
            from rasterio.crs import CRS
            c = CRS.from_wkt(info.crs)
            return c.to_string() or "custom"
        raise InputError(f"the images have different CRS (moving {name(moving)}, fixed {name(fixed)}): "
                         f"reproject one of them first")


def moving_to_fixed(moving, fixed):
    """2x3 affine: moving pixel -> fixed pixel."""
    return compose_affine(invert_affine(fixed.pixel_to_world), moving.pixel_to_world)


def footprint_box(shape, m):
    """Bounding box (x0, y0, x1, y1) in target pixels of a ``shape`` grid mapped by ``m``."""
    ny, nx = shape
    xs = np.array([-0.5, nx - 0.5, -0.5, nx - 0.5])
    ys = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    tx, ty = apply_affine(m, xs, ys)
    return tx.min(), ty.min(), tx.max(), ty.max()


def overlap_box(moving, fixed):
    """Integer fixed-pixel box ``(y0, y1, x0, x1)`` covered by both images; raises if empty."""
    x0, y0, x1, y1 = footprint_box(moving.shape, moving_to_fixed(moving, fixed))
    fy, fx = fixed.shape
    bx0, by0 = max(int(np.ceil(x0 - 0.5 + 1e-9)), 0), max(int(np.ceil(y0 - 0.5 + 1e-9)), 0)
    bx1, by1 = min(int(np.floor(x1 + 0.5 - 1e-9)), fx), min(int(np.floor(y1 + 0.5 - 1e-9)), fy)
    if bx1 - bx0 < 8 or by1 - by0 < 8:
        raise OverlapError("the moving and fixed images do not overlap"
                           + ("" if bx1 > bx0 and by1 > by0 else " at all"))
    return by0, by1, bx0, bx1


@dataclass(frozen=True)
class OutputGrid:
    """The grid an aligned image is written on."""

    shape: tuple  # (rows, cols)
    transform: tuple  # GDAL (a, b, c, d, e, f)
    crs: object
    pre: np.ndarray  # output px -> solve (fixed) px


def output_grid(moving, fixed, on_moving_grid=True, clip_fixed_to_moving=True) -> OutputGrid:
    """The moving grid (default), or the fixed grid cropped to the moving footprint."""
    if on_moving_grid:
        return OutputGrid(moving.shape, moving.transform, moving.crs, moving_to_fixed(moving, fixed))
    if clip_fixed_to_moving:
        y0, y1, x0, x1 = overlap_box(moving, fixed)
    else:
        y0, y1, x0, x1 = 0, fixed.shape[0], 0, fixed.shape[1]
    a, b, c, d, e, f = fixed.transform
    t = (a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0)
    pre = np.array([[1.0, 0.0, float(x0)], [0.0, 1.0, float(y0)]])
    return OutputGrid((y1 - y0, x1 - x0), t, fixed.crs, pre)


def check_band(info, band, role):
    if not 0 <= band < info.count:
        raise InputError(f"{role} band index {band} is out of range: the {role} image has {info.count} band(s) "
                         f"(indexes are 0-based)")
