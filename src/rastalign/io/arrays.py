"""An xarray array's grid and source, for the accessor: its (y, x) dims, its :class:`~rastalign.geometry.grids.Grid`
(rioxarray's geotransform and CRS; FITS arrays: world = pixel), the file behind it, and a lazy result
put back on an output grid with the array's dims, coordinates and attributes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rastalign.errors import InputError
from rastalign.geometry.grids import Grid
from rastalign.io.fits import inspect_fits
from rastalign.io.raster import RasterInfo, inspect_raster


def is_fits_array(da) -> bool:
    return "fits_header" in da.attrs or "rastalign_ext" in da.attrs


def dims(da):
    """(y dim, x dim) of an array: rioxarray's when it knows them, else the last two."""
    import rioxarray  # noqa: F401 - registers ``.rio``
    try:
        return da.rio.y_dim, da.rio.x_dim
    except Exception:  # noqa: BLE001 - rioxarray raises several kinds when dims are unknown
        return da.dims[-2], da.dims[-1]


def array_grid(da) -> Grid:
    """The :class:`~rastalign.geometry.grids.Grid` of ``da``: rioxarray's transform and CRS (FITS: world = pixel)."""
    ydim, xdim = dims(da)
    shape = (int(da.sizes[ydim]), int(da.sizes[xdim]))
    if is_fits_array(da):
        return Grid.pixel_frame(shape)
    return Grid(shape, _transform(da, ydim, xdim), da.rio.crs.to_wkt() if da.rio.crs is not None else None)


def array_info(da, nodata=None) -> RasterInfo:
    """``da`` described as a raster file would be: its grid, band count, dtype and nodata (``nodata`` if
    given, else rioxarray's; FITS arrays: none, invalid pixels are NaN)."""
    ydim, xdim = dims(da)
    count = int(np.prod([n for d, n in da.sizes.items() if d not in (ydim, xdim)] or [1]))
    nd = nodata if nodata is not None else None if is_fits_array(da) else da.rio.nodata
    nd = None if nd is None else float(nd)
    return RasterInfo(str(source(da) or ""), array_grid(da), count, str(da.dtype), nd, ())


@dataclass(frozen=True)
class ArrayRaster(RasterInfo):
    """An array as a raster source for estimation: its :class:`RasterInfo` plus its pixels ``data``, a dask (or
    numpy) array ``(bands, rows, cols)``. The proxies and the native windows are slices of ``data``, computed as
    tasks of the active scheduler: nothing is written anywhere (on a cluster, the client holds no pixels of a
    dask-backed array)."""

    data: object = dataclasses.field(default=None, compare=False, repr=False)

    def pixels(self, band, box):
        """Band ``band`` (0-based) over ``box = (y0, y1, x0, x1)``: a lazy slice of ``data``."""
        y0, y1, x0, x1 = (int(v) for v in box)
        return self.data[band, y0:y1, x0:x1]

    def nodata_or(self, given):
        """The nodata a read uses: ``given``, else the array's own (as a file read uses the file's)."""
        return given if given is not None else self.nodata

    def read(self, box):
        """``(data, valid)`` of every band over ``box``, as a file source's ``read``: the array's dtype, valid
        where finite and not nodata. Computed here (a dask array's slice, on the active scheduler)."""
        from rastalign._kernels.pixels import validity

        y0, y1, x0, x1 = (int(v) for v in box)
        data = np.asarray(self.data[:, y0:y1, x0:x1])
        return data, validity(data, self.nodata)


def array_raster(da, nodata=None) -> ArrayRaster:
    """``da`` as a raster source (see :class:`ArrayRaster`)."""
    return ArrayRaster(**vars(array_info(da, nodata)), data=as3d(da))


def _transform(da, ydim, xdim):
    """rioxarray's transform, recomputed from the coordinates when they disagree (e.g. after coarsen)."""
    t = tuple(da.rio.transform())[:6]
    a, b, c, d, e, f = t
    if b == 0 and d == 0 and xdim in da.coords and ydim in da.coords and min(da.shape[-2:]) > 1:
        xs, ys = da.coords[xdim].values, da.coords[ydim].values
        n = np.arange(2) + 0.5
        tol = dict(rtol=0.0, atol=1e-6 * max(abs(a), abs(e)))
        if not (np.allclose(xs[:2], c + a * n, **tol) and np.allclose(ys[:2], f + e * n, **tol)):
            t = tuple(da.rio.transform(recalc=True))[:6]
    return t


def source(da):
    """The file ``da`` was opened from (rioxarray's ``encoding["source"]``, :func:`~rastalign.open_fits`'s
    ``attrs["rastalign_path"]``), or None."""
    return da.encoding.get("source") or da.attrs.get("rastalign_path")


# dask layers that read a file (rioxarray's and :func:`~rastalign.open_fits`'s) or only select or re-chunk
READ_LAYERS = ("open_rasterio-", "original-open_rasterio-", "fits-", "original-fits-", "getitem-", "rechunk-")


def holds_file_pixels(da) -> bool:
    """Whether ``da``'s values can only be what its file holds: a dask graph of nothing but reads of one file,
    selections and re-chunking, or a lazily indexed file array not yet loaded. A concatenation, arithmetic, a
    mask or an item assignment shows in the graph; a loaded array may have been edited in place."""
    import dask.array

    data = da.variable._data
    if isinstance(data, dask.array.Array):
        names = list(data.__dask_graph__().layers)
        sources = {n.removeprefix("original-") for n in names if not n.startswith(("getitem-", "rechunk-"))}
        return all(n.startswith(READ_LAYERS) for n in names) and len(sources) == 1
    from xarray.core import indexing

    while isinstance(data, (indexing.MemoryCachedArray, indexing.CopyOnWriteArray)):
        data = data.array
    return isinstance(data, (indexing.LazilyIndexedArray, indexing.LazilyVectorizedIndexedArray))


def file_backed(da, info):
    """The file behind ``da`` when the array still has that file's grid and pixels (:func:`holds_file_pixels`),
    else None: then estimation reads the array itself (:func:`array_raster`)."""
    path = source(da)
    if not path or not Path(path).is_file() or not holds_file_pixels(da):
        return None
    if is_fits_array(da):
        return path if tuple(inspect_fits(path, da.attrs.get("rastalign_ext")).shape) == info.shape else None
    f = inspect_raster(path)
    same = f.shape == info.shape and f.count == info.count and np.allclose(f.transform, info.transform)
    return path if same else None


def as3d(da):
    """The data of ``da`` as (bands, rows, cols)."""
    ydim, xdim = dims(da)
    other = [d for d in da.dims if d not in (ydim, xdim)]
    if len(other) > 1:
        raise InputError(f"the accessor takes (y, x) or (band, y, x) arrays; got dims {da.dims}")
    arr = da.transpose(*other, ydim, xdim).data
    return arr if arr.ndim == 3 else arr[None]


def spatial_vars(ds):
    """The variables of a Dataset with (y, x) dims."""
    return [k for k, v in ds.data_vars.items() if v.ndim >= 2]


def as_array(obj, name=None):
    """``obj`` itself, or its variable ``name`` (else its first spatial one) when it is a Dataset."""
    import xarray as xr
    if isinstance(obj, xr.Dataset):
        names = spatial_vars(obj)
        return obj[name if name in names else names[0]]
    return obj


def on_grid(moving, data, grid, nodata, like=None, wcs=None):
    """``data`` (bands, rows, cols) as a DataArray with ``moving``'s dims, band coordinates and attributes, on
    ``grid``: FITS arrays get pixel coordinates and ``wcs``; rasters the coordinates of ``moving`` or of
    ``like`` (an array on ``grid``) when the grid is theirs, else the grid's own, and its CRS, transform and
    ``nodata``."""
    import xarray as xr
    from affine import Affine

    ydim, xdim = dims(moving)
    other = [d for d in moving.dims if d not in (ydim, xdim)]
    data, names = (data if other else data[0]), (*other, ydim, xdim)
    coords = {d: moving.coords[d] for d in other if d in moving.coords}
    attrs = {k: v for k, v in moving.attrs.items() if k not in ("rastalign_path", "rastalign_ext", "_FillValue")}
    if is_fits_array(moving):
        if "fits_header" in attrs:  # the header's WCS cards described the moving pixels; ``wcs`` is the grid's
            from rastalign.io.fits_cards import drop_wcs
            attrs["fits_header"] = drop_wcs(attrs["fits_header"].copy())
        coords.update({ydim: np.arange(grid.shape[0]), xdim: np.arange(grid.shape[1])})
        return xr.DataArray(data, dims=names, coords=coords, attrs={**attrs, "wcs": wcs}, name=moving.name)
    own = array_grid(moving)
    if grid.shape == own.shape and np.allclose(grid.transform, own.transform):
        like = moving
    if like is not None:
        coords.update({ydim: like.coords[ydim].values, xdim: like.coords[xdim].values})
    else:
        xs, ys = grid.coords()
        coords.update({xdim: xs, ydim: ys})
    res = xr.DataArray(data, dims=names, coords=coords, attrs=attrs, name=moving.name)
    res = res.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim, inplace=False)
    res = res.rio.write_crs(grid.crs) if grid.crs is not None else res
    return res.rio.write_transform(Affine(*grid.transform)).rio.write_nodata(nodata, encoded=False)
