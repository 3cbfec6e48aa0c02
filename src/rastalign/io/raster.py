"""GeoTIFF / COG (and anything GDAL reads): inspection, lazy opening, window reads, streamed writing.

Nothing here keeps a file handle beyond one call: window reads reopen the file, so
tasks stay small and picklable (a path and a box) under any dask scheduler.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..errors import InputError, OutputError
from .atomic import discard, temp_path_beside

MAX_PIXELS = 2 ** 40  # refuse absurd declared sizes before allocating anything


@dataclass(frozen=True)
class RasterInfo:
    """What the pipeline needs to know of a raster, read from its header only."""

    path: str
    shape: Tuple[int, int]  # (rows, cols)
    count: int
    dtype: str
    transform: tuple  # GDAL-style affine (a, b, c, d, e, f): x = a*col + b*row + c
    crs: Optional[str]
    nodata: Optional[float]
    descriptions: tuple
    mask_kind: str  # "none", "nodata", "per_dataset", "alpha"
    overviews: tuple = ()

    @property
    def pixel_to_world(self) -> np.ndarray:
        """2x3 matrix mapping pixel *centres* (x=col, y=row) to world coordinates."""
        a, b, c, d, e, f = self.transform
        return np.array([[a, b, c + 0.5 * (a + b)], [d, e, f + 0.5 * (d + e)]])

    @property
    def resolution(self) -> float:
        a, b, _, d, e, _ = self.transform
        return float(np.sqrt(abs(a * e - b * d)))


def _open(path):
    import rasterio
    from rasterio.errors import RasterioIOError

    p = Path(path)
    if not p.exists():
        raise InputError(f"file not found: {path}")
    if p.is_dir():
        raise InputError(f"not a raster file (a folder): {path}")
    if not os.access(p, os.R_OK):
        raise InputError(f"file is not readable (permission denied): {path}")
    if p.stat().st_size == 0:
        raise InputError(f"file is empty: {path}")
    try:
        return rasterio.open(p)
    except RasterioIOError as exc:
        raise InputError(f"not a readable raster: {path} ({str(exc).splitlines()[0][:160]})") from None


def inspect_raster(path) -> RasterInfo:
    """Read the header of ``path``; raise :class:`InputError` on anything unusable."""
    from rasterio.enums import MaskFlags

    with _open(path) as ds:
        if ds.count < 1 or ds.width < 1 or ds.height < 1:
            raise InputError(f"raster has no pixels: {path}")
        if ds.width * ds.height * ds.count > MAX_PIXELS:
            raise InputError(f"raster declares an absurd size {ds.count}x{ds.height}x{ds.width}: {path}")
        flags = ds.mask_flag_enums[0]
        if MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags:
            kind = "per_dataset"
        elif MaskFlags.alpha in flags:
            kind = "alpha"
        elif ds.nodata is not None:
            kind = "nodata"
        else:
            kind = "none"
        if len(set(ds.dtypes)) != 1:
            raise InputError(f"bands of different data types are not supported: {path}")
        t = ds.transform
        return RasterInfo(str(path), (ds.height, ds.width), ds.count, ds.dtypes[0],
                          (t.a, t.b, t.c, t.d, t.e, t.f), ds.crs.to_wkt() if ds.crs else None,
                          ds.nodata, tuple(ds.descriptions), kind, tuple(ds.overviews(1)))


def validity(data, nodata):
    """Valid pixels of a (bands, rows, cols) block: finite, and not nodata in every band."""
    data = np.asarray(data)
    if data.dtype.kind == "f":
        ok = np.isfinite(data).all(axis=0)
    else:
        ok = np.ones(data.shape[1:], bool)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        ok &= ~(data == nodata).all(axis=0)
    return ok


def read_window(path, box, bands=None, nodata=None, use_file_mask=True, out_shape=None):
    """Read ``box = (y0, y1, x0, x1)`` of ``bands`` (1-based list; all when None).

    Returns ``(data, valid)``: data (bands, rows, cols) in the file's dtype and the
    validity mask combining ``nodata`` (the given value, else the file's), NaN/Inf and
    the file's internal mask. With ``out_shape`` GDAL decimates (averaging, using
    overviews when present).
    """
    from rasterio.enums import MaskFlags, Resampling
    from rasterio.windows import Window

    y0, y1, x0, x1 = (int(v) for v in box)
    win = Window(x0, y0, x1 - x0, y1 - y0)
    with _open(path) as ds:
        idx = list(bands) if bands is not None else list(range(1, ds.count + 1))
        kw = {}
        if out_shape is not None:
            kw = {"out_shape": (len(idx),) + tuple(out_shape), "resampling": Resampling.average}
        data = ds.read(idx, window=win, **kw)
        nd = nodata if nodata is not None else ds.nodata
        ok = validity(data, nd)
        flags = ds.mask_flag_enums[0]
        if use_file_mask and (MaskFlags.per_dataset in flags or MaskFlags.alpha in flags):
            mkw = {} if out_shape is None else {"out_shape": tuple(out_shape)}
            ok &= ds.read_masks(idx[0], window=win, **mkw) > 0
    return data, ok


def open_raster(path, chunks="auto", band=None):
    """Open lazily as an ``xarray.DataArray`` (dims ``band, y, x``, dask-backed, CRS attached)."""
    import rioxarray

    info = inspect_raster(path)
    da = rioxarray.open_rasterio(path, chunks=chunks, masked=False, lock=False)
    if band is not None:
        da = da.sel(band=[band])
    da.attrs["rastalign_path"] = str(path)
    return da, info


class RasterWriter:
    """Streamed, tiled, compressed GeoTIFF written under a temporary name.

    ``write(box, data)`` writes one chunk; ``commit()`` renames the file into place (for
    ``COG`` it first copies the tiled file into a COG with overviews); ``abort()`` or an
    exception inside ``with`` removes every temporary file.
    """

    def __init__(self, path, shape, count, dtype, crs, transform, nodata, descriptions=None,
                 fmt="GTiff", tile=512, tags=None):
        import rasterio
        from affine import Affine

        self.final = Path(path)
        self.fmt = fmt
        self.tmp = temp_path_beside(self.final, ".tif")
        kind = np.dtype(dtype).kind
        profile = dict(driver="GTiff", width=int(shape[1]), height=int(shape[0]), count=int(count),
                       dtype=str(dtype), crs=crs, transform=Affine(*transform[:6]), nodata=nodata,
                       tiled=True, blockxsize=tile, blockysize=tile, compress="deflate",
                       predictor=3 if kind == "f" else 2, BIGTIFF="IF_SAFER", interleave="band")
        if shape[0] < tile or shape[1] < tile:
            profile.update(blockxsize=256 if shape[1] >= 256 else 16 * max(1, shape[1] // 16),
                           blockysize=256 if shape[0] >= 256 else 16 * max(1, shape[0] // 16))
            if shape[0] < 16 or shape[1] < 16:
                profile.update(tiled=False)
                profile.pop("blockxsize"); profile.pop("blockysize")
        try:
            self.ds = rasterio.open(self.tmp, "w", **profile)
        except Exception as exc:
            discard(self.tmp)
            raise OutputError(f"cannot create output {path}: {exc}") from None
        if descriptions:
            for i, d in enumerate(descriptions[:count], start=1):
                if d:
                    self.ds.set_band_description(i, d)
        if tags:
            self.ds.update_tags(**tags)

    def write(self, box, data):
        from rasterio.windows import Window

        y0, y1, x0, x1 = box
        self.ds.write(data, window=Window(x0, y0, x1 - x0, y1 - y0))

    def commit(self):
        import rasterio.shutil

        self.ds.close()
        try:
            if self.fmt == "COG":
                cog = temp_path_beside(self.final, ".tif")
                try:
                    rasterio.shutil.copy(self.tmp, cog, driver="COG", COMPRESS="DEFLATE",
                                         BIGTIFF="IF_SAFER", OVERVIEWS="AUTO", NUM_THREADS="ALL_CPUS")
                    os.replace(cog, self.final)
                finally:
                    discard(cog)
            else:
                os.replace(self.tmp, self.final)
        except OSError as exc:
            raise OutputError(f"cannot write output {self.final}: {exc.strerror or exc}") from None
        finally:
            discard(self.tmp)

    def abort(self):
        try:
            self.ds.close()
        finally:
            discard(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False
