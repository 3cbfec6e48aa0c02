"""Sinks: consume the lazy warp (a dask array) under the active scheduler and publish atomically.

* **GeoTIFF / COG**: :mod:`rastalign.sinks.geotiff` (tiles and overviews made on the workers,
  compressed bytes assembled here).
* **FITS**: blocks stream into a memory-mapped file laid out up front.
* **Zarr**: the workers write their chunks themselves; CRS and transform are stored so
  that ``xarray.open_zarr(path)`` and rioxarray read it back georeferenced.

Every sink writes under a temporary name beside the output, verifies the result and
renames it into place only when complete: a failed or interrupted run leaves nothing at
the output path. Blocks are computed in bounded, ordered batches with ``dask.compute``, so
``dask.config``'s scheduler or the active ``distributed.Client`` runs them, memory stays
bounded by the batch, and the bytes written do not depend on the scheduler.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from rastalign.errors import InputError, OutputError
from rastalign.sinks.stream import consume
from rastalign.sinks.atomic import TMP_TAG, check_folder
from rastalign.io.paths import is_zarr_store

log = logging.getLogger(__name__)


def write_output(arr, path, fmt, grid, nodata, tags=None, metadata_from=None, descriptions=None, fits_header=None,
                 wcs_header=None, fits_cards=None) -> dict:
    """Write the lazy ``arr`` (bands, rows, cols) on ``grid`` in ``fmt`` (GTiff, COG, FITS, Zarr): the one
    dispatch every command and the accessor use. ``tags`` go into GeoTIFF/Zarr metadata, ``fits_cards``
    into the FITS header (with ``fits_header``'s cards and ``wcs_header``'s WCS)."""
    if fmt == "FITS":
        return write_fits(arr, path, header=fits_header, wcs_header=wcs_header, tags=fits_cards,
                          descriptions=descriptions, nodata=nodata)
    if fmt == "Zarr":
        return write_zarr(arr, path, grid, nodata, tags, descriptions)
    from rastalign.sinks.geotiff import write_geotiff

    return write_geotiff(arr, path, grid, nodata, fmt, metadata_from=metadata_from, tags=tags)


# --- FITS ----------------------------------------------------------------------------------

def _fits_block(block, box, cval, cval_mask, with_mask):
    block = np.asarray(block)
    bad = ~np.isfinite(block).all(axis=0) if block.dtype.kind == "f" else np.zeros(block.shape[1:], bool)
    if block.dtype.kind == "f" and not np.isnan(cval):
        block = block.copy()
        block[:, bad] = cval
    mask = np.where(bad, cval_mask, 0).astype(np.uint8) if with_mask else None
    return block, mask, int((~bad).sum())


def write_fits(arr, path, header=None, wcs_header=None, tags=None, descriptions=None, nodata=None, cval=np.nan,
               cval_mask=1, mask=False) -> dict:
    """Stream the lazy ``arr`` into a FITS file (primary HDU; a cube for several bands): the source
    ``header`` without its WCS, the WCS of ``wcs_header``, ``tags``; NaN becomes ``cval``; with
    ``mask`` a ``MASK`` extension (``cval_mask`` where no valid source pixel)."""
    from rastalign.sinks.fits import FitsWriter

    nb, ny, nx = (int(v) for v in arr.shape)
    n_valid = 0
    with FitsWriter(path, (ny, nx), nb, arr.dtype.name, header=header, wcs_header=wcs_header, nodata=nodata,
                    descriptions=descriptions, tags=tags, mask=mask) as w:
        def put(box, res):
            nonlocal n_valid
            data, m, nv = res
            w.write(box, data)
            if m is not None:
                w.write_mask(box, m)
            n_valid += nv

        t = consume(arr, partial(_fits_block, cval=float(cval), cval_mask=int(cval_mask), with_mask=bool(mask)),
                    put)
        w.commit()
    return {"format": "FITS", "warp_write_s": t, "valid_pixels": n_valid}


# --- Zarr ----------------------------------------------------------------------------------

def write_zarr(arr, path, grid, nodata, tags=None, descriptions=None) -> dict:
    """Write the lazy ``arr`` to a Zarr store at ``path`` (a folder, or ``s3://...``), each chunk by the
    worker that computes it.

    One variable ``aligned`` (``band, y, x``) with ``x``/``y`` pixel-centre coordinates and a
    ``spatial_ref`` coordinate (CRS WKT and GeoTransform), read back georeferenced by
    ``xarray.open_zarr(path).aligned.rio``. Integer nodata is the ``nodata`` attribute (pixels are
    stored as written, not masked); float nodata is the CF ``_FillValue``. The store is written under a
    temporary name (a folder beside it, or a temporary prefix in the bucket) and published when complete:
    renamed, or copied object by object with the metadata last, so it opens only once it is whole.
    """
    import dask
    import xarray as xr

    from rastalign.io.paths import is_url

    t0 = time.perf_counter()
    nb, ny, nx = (int(v) for v in arr.shape)
    ds, encoding = _zarr_dataset(arr, grid, nodata, tags, descriptions)
    remote = is_url(path)
    tmp = _zarr_temp(path, remote)
    removed = False
    try:
        store = _zarr_store(tmp) if remote else str(tmp)
        job = ds.to_zarr(store, mode="w", compute=False, encoding={"aligned": encoding}, consolidated=True,
                         zarr_format=2)  # v2 + consolidated: read by GDAL, zarr 2 and 3, no warnings
        dask.compute(job)
        back = xr.open_zarr(store, consolidated=True)
        if back["aligned"].shape != (nb, ny, nx):
            raise OutputError(f"cannot write output {path}: the store reads back as {back['aligned'].shape}")
        if remote:
            _publish_prefix(str(tmp), str(path))
        else:
            _publish_dir(tmp, Path(path))
    except OutputError:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError locally, botocore/aiohttp errors remotely
        from rastalign.io.paths import is_store_timeout, store_cause

        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else store_cause(exc)
        left = ""
        if remote:  # said in the one line, not logged: a store that stopped answering is given a short wait
            removed = True
            if not _remove_store(tmp, remote, quick=is_store_timeout(exc), quiet=True):
                left = f"; the temporary store {tmp} may remain (remove it once the store answers)"
        raise OutputError(f"cannot write output {path}: {cause}{left}") from None
    finally:
        if not removed:
            _remove_store(tmp, remote)
    return {"format": "Zarr", "warp_write_s": time.perf_counter() - t0}


def _zarr_store(url):
    """The Zarr store at an object-store ``url``, read and written through :func:`~rastalign.io.paths.filesystem`
    (every request bounded by ``RASTALIGN_STORE_TIMEOUT``): the store's file system travels to the workers
    with the graph."""
    from zarr.storage import FsspecStore

    from rastalign.io.paths import filesystem

    fs, key = filesystem(url, asynchronous=True)
    return FsspecStore(fs, path=key.rstrip("/"))


def _zarr_dataset(arr, grid, nodata, tags, descriptions):
    import rioxarray  # noqa: F401 - registers ``.rio``
    import xarray as xr
    from affine import Affine

    nb = int(arr.shape[0])
    xs, ys = grid.coords()
    coords = {"band": np.arange(1, nb + 1), "y": ys, "x": xs}
    if any(len(set(sizes[:-1])) > 1 or (len(sizes) > 1 and sizes[-1] > sizes[0]) for sizes in arr.chunks):
        arr = arr.rechunk((nb, max(arr.chunks[1]), max(arr.chunks[2])))  # Zarr chunks are regular
    out = xr.DataArray(arr, dims=("band", "y", "x"), coords=coords, name="aligned")
    if grid.crs is not None:
        out = out.rio.write_crs(grid.crs)
    out = out.rio.write_transform(Affine(*grid.transform[:6]))
    # spatial_ref listed as a coordinate: plain ``open_zarr`` (no ``decode_coords="all"``) finds the CRS
    out.encoding["coordinates"] = "spatial_ref"
    encoding = dict(out.encoding)
    encoding.pop("coordinates")
    if nodata is not None and arr.dtype.kind == "f":
        encoding["_FillValue"] = float(nodata)
    elif nodata is not None:
        out.attrs["nodata"] = float(nodata)
    if descriptions and any(descriptions):
        out.attrs["long_name"] = [str(v or "") for v in descriptions]
    ds = out.to_dataset()
    ds.attrs.update({k: str(v) for k, v in (tags or {}).items()})
    return ds, encoding


def _zarr_temp(path, remote):
    """A fresh temporary store beside ``path``: an absolute folder (the workers may run elsewhere) or a
    hidden prefix in the same bucket."""
    if remote:
        import uuid

        base, _, name = str(path).rstrip("/").rpartition("/")
        return f"{base}/.{name}{TMP_TAG}{uuid.uuid4().hex[:12]}.zarr"
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    check_folder(folder)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}{TMP_TAG}", suffix=".zarr", dir=folder)).resolve()


def _remove_store(tmp, remote, quick=False, quiet=False) -> bool:
    """Remove the temporary store ``tmp``; ``True`` when it is gone, else a warning unless ``quiet`` (the
    caller says what remains). ``quick``: after the store stopped answering, wait for it only a third of
    ``RASTALIGN_STORE_TIMEOUT`` more."""
    if not remote:
        shutil.rmtree(tmp, ignore_errors=True)
        return True
    from rastalign.io.paths import filesystem, store_timeout

    try:
        fs, key = filesystem(tmp)
        wait = {"timeout": max(1.0, store_timeout() / 3)} if quick else {}
        if fs.exists(key, **wait):
            fs.rm(key, recursive=True, **wait)
        return True
    except Exception:  # noqa: BLE001 - best effort: the temporary prefix is hidden and named as such
        if not quiet:
            log.warning("could not remove the temporary store %s", tmp)
        return False


METADATA = (".zarray", ".zattrs", ".zgroup", "zarr.json")


def _publish_prefix(tmp, final):
    """Copy the complete store under ``tmp`` to ``final`` inside the bucket: chunks first, then the
    metadata, ``.zmetadata`` (what ``open_zarr`` reads first) last. An existing store at ``final``
    (``--overwrite`` checked by the caller) is removed first."""
    from rastalign.io.paths import filesystem

    fs, tkey = filesystem(tmp)
    _, fkey = filesystem(final)
    if fs.exists(fkey):
        fs.rm(fkey, recursive=True)
    keys = sorted(fs.find(tkey))
    order = sorted(keys, key=lambda k: (k.endswith(".zmetadata"), k.endswith(METADATA)))
    for k in order:
        fs.copy(k, fkey + k[len(tkey):])


def _publish_dir(tmp, final):
    """Rename the complete store ``tmp`` to ``final``; an existing store there (``--overwrite``
    was checked by the caller) is moved aside first and removed only after the rename."""
    if not final.exists():
        os.rename(tmp, final)
        return
    if not is_zarr_store(final):
        raise OutputError(f"output path is a folder that is not a Zarr store, refusing to replace it: {final}")
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}{TMP_TAG}old-", dir=final.parent))
    os.rename(final, old / "store")
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


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
