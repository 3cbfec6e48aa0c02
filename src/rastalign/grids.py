"""Grid relations between the fixed, moving and output rasters.

Every grid has a 2x3 pixel->world matrix of pixel *centres* and a CRS. In one CRS the
relation between two grids is one affine, ``moving px -> fixed px`` =
``inv(W_fixed) o W_moving``; across CRS it goes through PROJ (:func:`pixel_mapping`)
and is fitted as an affine plus a smooth field where a model needs it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError, OverlapError
from .model.affine import apply_affine, compose_affine, invert_affine, pixel_to_world


def same_crs(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    from rasterio.crs import CRS

    return CRS.from_user_input(a) == CRS.from_user_input(b)


def one_frame(a, b) -> bool:
    """Grids related by one affine: the same CRS, or a CRS missing on either side (nothing to reproject with)."""
    return a is None or b is None or same_crs(a, b)


def pixel_mapping(src, dst):
    """Callable ``(x, y) -> (x', y')``: pixels of grid ``src`` to pixels of grid ``dst``
    (objects with ``pixel_to_world`` and ``crs``), through PROJ when the CRS differ."""
    to_world = np.asarray(src.pixel_to_world, float)
    from_world = invert_affine(dst.pixel_to_world)
    if one_frame(src.crs, dst.crs):
        m = compose_affine(from_world, to_world)
        return lambda x, y: apply_affine(m, x, y)
    from pyproj import CRS, Transformer

    tr = Transformer.from_crs(CRS.from_user_input(src.crs), CRS.from_user_input(dst.crs), always_xy=True)

    def f(x, y):
        wx, wy = apply_affine(to_world, x, y)
        ux, uy = tr.transform(np.asarray(wx, float), np.asarray(wy, float))
        return apply_affine(from_world, np.asarray(ux), np.asarray(uy))

    return f


def check_crs(moving, fixed):
    """Refuse a pair where only one image has a CRS (different CRS are reprojected)."""
    if (moving.crs is None) != (fixed.crs is None):
        def name(info):
            if info.crs is None:
                return "none"
            from rasterio.crs import CRS
            c = CRS.from_wkt(info.crs)
            return c.to_string() or "custom"
        raise InputError(f"only one image has a CRS (moving {name(moving)}, fixed {name(fixed)}): "
                         f"cannot relate their grids")


def moving_to_fixed(moving, fixed):
    """2x3 affine: moving pixel -> fixed pixel."""
    return compose_affine(invert_affine(fixed.pixel_to_world), moving.pixel_to_world)


def footprint_box(shape, m):
    """Bounding box (x0, y0, x1, y1) in target pixels of a ``shape`` grid mapped by ``m``
    (a 2x3 affine or a mapping callable; the border is sampled densely for the latter)."""
    ny, nx = shape
    t = np.linspace(0.0, 1.0, 2 if not callable(m) else 33)
    xs = np.concatenate([-0.5 + t * nx, np.full(t.size, nx - 0.5), -0.5 + t * nx, np.full(t.size, -0.5)])
    ys = np.concatenate([np.full(t.size, -0.5), -0.5 + t * ny, np.full(t.size, ny - 0.5), -0.5 + t * ny])
    tx, ty = m(xs, ys) if callable(m) else apply_affine(m, xs, ys)
    return np.min(tx), np.min(ty), np.max(tx), np.max(ty)


def overlap_box(moving, fixed):
    """Integer fixed-pixel box ``(y0, y1, x0, x1)`` covered by both images; raises if empty."""
    x0, y0, x1, y1 = footprint_box(moving.shape, pixel_mapping(moving, fixed))
    fy, fx = fixed.shape
    # every fixed pixel whose area overlaps the footprint: i + 0.5 > x0 and i - 0.5 < x1
    bx0, by0 = max(int(np.ceil(x0 - 0.5 + 1e-9)), 0), max(int(np.ceil(y0 - 0.5 + 1e-9)), 0)
    bx1, by1 = min(int(np.ceil(x1 + 0.5 - 1e-9)), fx), min(int(np.ceil(y1 + 0.5 - 1e-9)), fy)
    if bx1 <= bx0 or by1 <= by0:
        raise OverlapError("the moving and fixed images do not overlap at all")
    if bx1 - bx0 < 8 or by1 - by0 < 8:
        raise OverlapError(f"the moving and fixed images overlap by only {by1 - by0} x {bx1 - bx0} fixed pixels "
                           f"(at least 8 x 8 are needed to align)")
    return by0, by1, bx0, bx1


@dataclass(frozen=True)
class OutputGrid:
    """The grid an aligned image is written on."""

    shape: tuple  # (rows, cols)
    transform: tuple  # GDAL (a, b, c, d, e, f)
    crs: object
    pre: np.ndarray  # output px -> solve (fixed) px (same CRS); see ``pixel_to_world`` otherwise

    @property
    def pixel_to_world(self):
        return pixel_to_world(self.transform)


def _grid(shape, transform, crs, fixed) -> "OutputGrid":
    g = OutputGrid(tuple(int(v) for v in shape), tuple(float(v) for v in transform[:6]), crs, None)
    # without a CRS on either side there is nothing to reproject with: the frames are taken as one
    pre = compose_affine(invert_affine(fixed.pixel_to_world), g.pixel_to_world) if one_frame(crs, fixed.crs) else None
    return OutputGrid(g.shape, g.transform, crs, pre)


def output_grid(moving, fixed, on_moving_grid=True, clip_fixed_to_moving=True, like=None, output_crs=None,
                output_resolution=None) -> OutputGrid:
    """The grid to write on: a template raster's (``like``), one in ``output_crs`` and/or at
    ``output_resolution`` covering the moving footprint, the moving grid (default), or the
    fixed grid cropped to the moving footprint. ``pre`` is ``None`` when the grid's CRS
    differs from the fixed image's (the model is then re-fitted, see :func:`rebase`)."""
    if like is not None:
        return _grid(like.shape, like.transform, like.crs, fixed)
    if output_crs is not None or output_resolution is not None:
        from rasterio.crs import CRS
        from rasterio.warp import calculate_default_transform
        from rasterio.transform import array_bounds
        from affine import Affine

        dst = CRS.from_user_input(output_crs) if output_crs is not None else CRS.from_wkt(moving.crs)
        bounds = array_bounds(moving.shape[0], moving.shape[1], Affine(*moving.transform))
        kw = {"resolution": output_resolution} if output_resolution else {}
        t, w, h = calculate_default_transform(CRS.from_wkt(moving.crs), dst, moving.shape[1], moving.shape[0],
                                              *bounds, **kw)
        return _grid((h, w), (t.a, t.b, t.c, t.d, t.e, t.f), dst.to_wkt(), fixed)
    if on_moving_grid:
        return _grid(moving.shape, moving.transform, moving.crs, fixed)
    if clip_fixed_to_moving:
        y0, y1, x0, x1 = overlap_box(moving, fixed)
    else:
        y0, y1, x0, x1 = 0, fixed.shape[0], 0, fixed.shape[1]
    a, b, c, d, e, f = fixed.transform
    t = (a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0)
    return OutputGrid((y1 - y0, x1 - x0), t, fixed.crs, np.array([[1.0, 0.0, float(x0)], [0.0, 1.0, float(y0)]]))


def rebase(model, grid: OutputGrid, fixed, max_err=0.002):
    """The estimated model (fixed px -> moving px) seen from ``grid``: exact when the CRS
    match (an affine ``pre``), else fitted through PROJ. Returns ``(model, fit_error_px)``."""
    import dataclasses

    if grid.pre is not None:
        return model.with_output_grid(grid.pre, grid.shape), 0.0
    from .model.fit import fit_mapping

    to_fixed = pixel_mapping(grid, fixed)
    fitted, err = fit_mapping(lambda x, y: model(*to_fixed(x, y)), grid.shape, max_err=max_err)
    return dataclasses.replace(fitted, moving_shape=model.moving_shape, meta=dict(model.meta)), err


def check_band(info, band, role):
    if not 0 <= band < info.count:
        raise InputError(f"{role} band index {band} is out of range: the {role} image has {info.count} band(s) "
                         f"(indexes are 0-based)")


def check_crs_option(crs):
    """Refuse an ``--output-crs`` PROJ does not know, in one line and before any work."""
    if crs is None:
        return
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputError(f"--output-crs {crs} is not a CRS PROJ knows ({str(exc).splitlines()[0][:120]})") from None
