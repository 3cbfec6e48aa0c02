"""Lazy sources: small picklable descriptions that any worker can read a box from.

A source is what a warp task carries instead of pixels: a path and a few numbers. Its
``read(box)`` reopens the file inside the task and returns ``(data, valid)`` for
``box = (y0, y1, x0, x1)``: data ``(bands, rows, cols)`` and the validity mask. Nothing
is read when a source is made. A dask array (e.g. behind a DataArray) is a source too:
:func:`rastalign.warp.graph.lazy_warp` slices it instead of calling ``read``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from rastalign.io.paths import absolute_path


@dataclass(frozen=True)
class RasterSource:
    """Every band (or ``bands``, 1-based) of a GeoTIFF/COG or anything GDAL reads."""

    path: str
    shape: Tuple[int, int]
    count: int
    dtype: str
    nodata: Optional[float] = None  # overrides the file's nodata when given
    bands: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        object.__setattr__(self, "path", absolute_path(self.path))

    @property
    def n_bands(self) -> int:
        return len(self.bands) if self.bands else self.count

    def read(self, box):
        from rastalign.io.raster import read_window

        return read_window(self.path, box, bands=self.bands, nodata=self.nodata)


@dataclass(frozen=True)
class FitsSource:
    """One image HDU of a FITS file (``ext`` resolved), read as float32 with NaN where invalid;
    ``mask_ext``: an HDU of the same file whose non-zero pixels are invalid."""

    path: str
    ext: int
    shape: Tuple[int, int]
    mask_ext: Optional[int] = None
    dtype: str = "float32"
    count: int = 1
    nodata: Optional[float] = None

    def __post_init__(self):
        object.__setattr__(self, "path", absolute_path(self.path))

    @property
    def n_bands(self) -> int:
        return 1

    def read(self, box):
        from rastalign.io.fits import read_fits_window

        return read_fits_window(self.path, self.ext, box, self.mask_ext, self.dtype)


def fits_source(path, ext=None, mask_ext=None) -> FitsSource:
    """A :class:`FitsSource` for HDU ``ext`` (index, name or None = first image HDU)."""
    from rastalign.io.fits import inspect_fits, resolve_ext

    info = inspect_fits(path, ext)
    mext = None if mask_ext is None else resolve_ext(path, mask_ext)
    return FitsSource(str(path), int(info.ext), tuple(info.shape), mext)
