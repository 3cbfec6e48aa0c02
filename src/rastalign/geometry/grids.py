"""The one grid type, :class:`Grid`, and the relations between the fixed, moving and output grids.

A grid is a shape, a GDAL geotransform and a CRS; its :attr:`~Grid.pixel_to_world` maps pixel
*centres* (integers) to world coordinates. In one CRS the relation between two grids is one
affine, ``moving px -> fixed px`` = ``inv(W_fixed) o W_moving``; across CRS it goes through PROJ
(:func:`pixel_mapping`) and is fitted as an affine plus a smooth field where a model needs it.
Footprints, the output grid of an alignment, and the re-basing of a model onto another grid (the
grids an accessor estimate records in ``model.meta["grids"]``) live here too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from rastalign.errors import InputError, OverlapError
from rastalign.geometry.affine import apply_affine, compose_affine, invert_affine, pixel_to_world

PIXEL_TRANSFORM = (1.0, 0.0, -0.5, 0.0, 1.0, -0.5)  # world = pixel: pixel centre (x, y) at world (x, y)
GRID_NAMES = ("solve", "output", "moving")  # the grids an accessor estimate records


@dataclass(frozen=True)
class Grid:
    """A raster grid: ``shape`` (rows, cols), the GDAL geotransform ``transform`` ``(a, b, c, d, e, f)``
    (``x = a*col + b*row + c`` at pixel *corners*) and ``crs`` (WKT, or anything PROJ reads; None: no CRS).

    ``shape`` is None only for the solve frame of a model saved by rastalign 0.1.0 (its shape was not
    recorded, and re-basing needs only its :attr:`pixel_to_world`)."""

    shape: Optional[tuple]
    transform: tuple
    crs: Optional[str] = None
    # GDAL's AREA_OR_POINT of the raster the grid is read from: it goes with the georeference (GDAL writes a
    # PixelIsPoint tiepoint half a pixel on), so an image written on the grid reads as that raster does
    area_or_point: str = dataclasses.field(default="Area", compare=False)

    def __post_init__(self):
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        object.__setattr__(self, "transform", tuple(float(v) for v in tuple(self.transform)[:6]))

    @classmethod
    def pixel_frame(cls, shape) -> "Grid":
        """A grid whose world is its own pixels (FITS arrays): no CRS, pixel centre ``(x, y)`` at ``(x, y)``."""
        return cls(shape, PIXEL_TRANSFORM)

    @property
    def pixel_to_world(self) -> np.ndarray:
        """2x3 matrix mapping pixel *centres* (x=col, y=row) to world coordinates."""
        return pixel_to_world(self.transform)

    @property
    def resolution(self) -> float:
        """Pixel size: the square root of the pixel's area in world units."""
        a, b, _, d, e, _ = self.transform
        return float(np.sqrt(abs(a * e - b * d)))

    def coords(self):
        """``(x, y)``: world coordinates of the pixel centres along the columns and the rows (north-up grids)."""
        a, _, c, _, e, f = self.transform
        return c + a * (np.arange(self.shape[1]) + 0.5), f + e * (np.arange(self.shape[0]) + 0.5)

    def to_dict(self) -> dict:
        return {"shape": None if self.shape is None else list(self.shape), "transform": list(self.transform),
                "crs": self.crs}

    @classmethod
    def from_dict(cls, d) -> "Grid":
        return cls(d.get("shape"), d["transform"], d.get("crs"))


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
    return lambda x, y: apply_affine(from_world, *tr.transform(*apply_affine(to_world, x, y)))


def check_crs(moving, fixed):
    """Refuse a pair where only one image has a CRS (different CRS are reprojected)."""
    if (moving.crs is None) != (fixed.crs is None):
        from rasterio.crs import CRS

        def name(info):
            return "none" if info.crs is None else CRS.from_wkt(info.crs).to_string() or "custom"
        raise InputError(f"only one image has a CRS (moving {name(moving)}, fixed {name(fixed)}): "
                         f"cannot relate their grids")


def moving_to_fixed(moving, fixed):
    """2x3 affine: moving pixel -> fixed pixel."""
    return compose_affine(invert_affine(fixed.pixel_to_world), moving.pixel_to_world)


def footprint_box(shape, m):
    """Bounding box (x0, y0, x1, y1) in target pixels of a ``shape`` grid mapped by the callable ``m`` (a
    :func:`pixel_mapping`), its border sampled densely."""
    ny, nx = shape
    t = np.linspace(0.0, 1.0, 33)
    xs = np.concatenate([-0.5 + t * nx, np.full(t.size, nx - 0.5), -0.5 + t * nx, np.full(t.size, -0.5)])
    ys = np.concatenate([np.full(t.size, -0.5), -0.5 + t * ny, np.full(t.size, ny - 0.5), -0.5 + t * ny])
    tx, ty = m(xs, ys)
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
class OutputGrid(Grid):
    """The grid an aligned image is written on, with ``pre``: output px -> solve (fixed) px when the two
    are in one frame, else None (the model is then re-fitted through PROJ, see :func:`rebase`)."""

    pre: Optional[np.ndarray] = dataclasses.field(default=None, compare=False)


def _output(grid, fixed) -> OutputGrid:
    # without a CRS on either side there is nothing to reproject with: the frames are taken as one
    pre = moving_to_fixed(grid, fixed) if one_frame(grid.crs, fixed.crs) else None
    return OutputGrid(grid.shape, grid.transform, grid.crs, grid.area_or_point, pre=pre)


def output_grid(moving, fixed, on_moving_grid=True, clip_fixed_to_moving=True, like=None, output_crs=None,
                output_resolution=None) -> OutputGrid:
    """The grid to write on: a template raster's (``like``), one in ``output_crs`` and/or at
    ``output_resolution`` covering the moving footprint, the moving grid (default), or the
    fixed grid cropped to the moving footprint. ``pre`` is ``None`` when the grid's CRS
    differs from the fixed image's (the model is then re-fitted, see :func:`rebase`)."""
    if like is not None:
        return _output(like.grid, fixed)
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
        return _output(Grid((h, w), (t.a, t.b, t.c, t.d, t.e, t.f), dst.to_wkt()), fixed)
    if on_moving_grid:
        return _output(moving.grid, fixed)
    y0, y1, x0, x1 = overlap_box(moving, fixed) if clip_fixed_to_moving else (0, fixed.shape[0], 0, fixed.shape[1])
    a, b, c, d, e, f = fixed.transform
    t = (a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0)
    return OutputGrid((y1 - y0, x1 - x0), t, fixed.crs, fixed.grid.area_or_point,
                      pre=np.array([[1.0, 0.0, float(x0)], [0.0, 1.0, float(y0)]]))


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
