"""The one format switch: the lazy warp (a dask array) written as GeoTIFF, COG, FITS or Zarr
(:func:`write_output`), and what an output of each format is when read back (:func:`written_shape`).

* **GeoTIFF / COG**: :mod:`rastalign.sinks.geotiff` (tiles and overviews made on the workers,
  compressed bytes assembled here).
* **FITS**: :mod:`rastalign.sinks.fits`, blocks streamed into a memory-mapped file laid out up front.
* **Zarr**: :mod:`rastalign.sinks.zarr`, the workers write their chunks themselves.

Every sink writes under a temporary name beside the output, verifies the result and renames it into place
only when complete: a failed or interrupted run leaves nothing at the output path. Blocks are computed in
bounded, ordered batches with ``dask.compute``, so ``dask.config``'s scheduler or the active
``distributed.Client`` runs them, memory stays bounded by the batch, and the bytes written do not depend on
the scheduler. What an output carries besides its pixels is a :class:`~rastalign.sinks.carried.Carried`.
"""
from __future__ import annotations

import numpy as np

from rastalign.errors import InputError
from rastalign.sinks.carried import Carried


def write_output(arr, path, fmt, grid, nodata, carried: Carried = Carried()) -> dict:
    """Write the lazy ``arr`` (bands, rows, cols) on ``grid`` in ``fmt`` (GTiff, COG, FITS, Zarr) with what
    ``carried`` names: the one dispatch every command and the accessor use."""
    if fmt == "FITS":
        from rastalign.sinks.fits import write_fits

        return write_fits(arr, path, grid, nodata, carried)
    if fmt == "Zarr":
        from rastalign.sinks.zarr import write_zarr

        return write_zarr(arr, path, grid, nodata, carried)
    from rastalign.sinks.geotiff import write_geotiff

    return write_geotiff(arr, path, grid, nodata, fmt, carried)


def written_shape(path):
    """``(rows, cols)`` of an output this package wrote, read back by its format (from the suffix)."""
    from rastalign.params import FORMAT_SUFFIXES

    low = str(path).rstrip("/").lower()
    if low.endswith(FORMAT_SUFFIXES["Zarr"]):
        import xarray as xr

        return tuple(xr.open_zarr(str(path), consolidated=True)["aligned"].shape[-2:])
    if low.endswith(FORMAT_SUFFIXES["FITS"]):  # the primary HDU this package writes (a cube for several bands)
        from astropy.io import fits

        header = fits.getheader(path)
        return int(header["NAXIS2"]), int(header["NAXIS1"])
    from rastalign.io.raster import inspect_raster

    return tuple(inspect_raster(path).shape)


def default_output_nodata(mov, fix, given):
    """Output nodata: given, else the moving image's; then, for a float output, NaN (a float image's voids stay
    apart from its real zeros); for an integer output, the fixed image's, else 0 (as coregix)."""
    floating = np.dtype(mov.dtype).kind == "f"
    for v in (given, mov.nodata, np.nan if floating else None, fix.nodata if fix is not None else None):
        if v is not None:
            nd = float(v)
            if not floating:
                info = np.iinfo(mov.dtype)
                if not (info.min <= nd <= info.max) or nd != int(nd):
                    raise InputError(f"--output-nodata {v:g} does not fit the output data type {mov.dtype}")
            return nd
    return 0.0
