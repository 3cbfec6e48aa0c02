"""The Zarr sink: the workers write their chunks themselves; CRS and transform are stored so that
``xarray.open_zarr(path)`` and rioxarray read it back georeferenced. Written under a temporary name (a folder
beside the output, or a hidden prefix in the bucket) and published whole."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from rastalign.errors import OutputError
from rastalign.io.paths import is_zarr_store
from rastalign.sinks.atomic import TMP_TAG, check_folder
from rastalign.sinks.carried import Carried, tags

log = logging.getLogger(__name__)


def write_zarr(arr, path, grid, nodata, carried: Carried = Carried()) -> dict:
    """Write the lazy ``arr`` to a Zarr store at ``path`` (a folder, or ``s3://...``), each chunk by the
    worker that computes it.

    ``carried``'s tags are the store's attributes. One variable ``aligned`` (``band, y, x``) with ``x``/``y`` pixel-centre coordinates and a
    ``spatial_ref`` coordinate (CRS WKT and GeoTransform), read back georeferenced by
    ``xarray.open_zarr(path).aligned.rio``. Integer nodata is the ``nodata`` attribute (pixels are
    stored as written, not masked); float nodata is the CF ``_FillValue``. The store is written under a
    temporary name (a folder beside it, or a temporary prefix in the bucket) and published when complete:
    renamed, or copied object by object with the metadata last, so it opens only once it is whole.
    """
    import xarray as xr

    from rastalign.io.paths import is_url
    from rastalign.runtime.scheduler import compute

    t0 = time.perf_counter()
    nb, ny, nx = (int(v) for v in arr.shape)
    ds, encoding = _zarr_dataset(arr, grid, nodata, carried)
    remote = is_url(path)
    tmp = _zarr_temp(path, remote)
    removed = False
    try:
        store = _zarr_store(tmp) if remote else str(tmp)
        job = ds.to_zarr(store, mode="w", compute=False, encoding={"aligned": encoding}, consolidated=True,
                         zarr_format=2)  # v2 + consolidated: read by GDAL, zarr 2 and 3, no warnings
        compute(job)
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


def _zarr_dataset(arr, grid, nodata, carried):
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
    encoding = dict(out.encoding)
    out.encoding["coordinates"] = "spatial_ref"
    if nodata is not None and arr.dtype.kind == "f":
        encoding["_FillValue"] = float(nodata)
    elif nodata is not None:
        out.attrs["nodata"] = float(nodata)
    if carried.descriptions and any(carried.descriptions):
        out.attrs["long_name"] = [str(v or "") for v in carried.descriptions]
    ds = out.to_dataset()
    ds.attrs.update(tags(carried))
    return ds, encoding


def _zarr_temp(path, remote):
    """A fresh temporary store beside ``path``: an absolute folder (the workers may run elsewhere) or a
    hidden prefix in the same bucket."""
    if remote:
        import uuid

        base, _, name = str(path).rstrip("/").rpartition("/")
        return f"{base}/.{name}{TMP_TAG}{uuid.uuid4().hex[:12]}.zarr"
    final = Path(path)
    check_folder(final.parent)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}{TMP_TAG}", suffix=".zarr", dir=final.parent)).resolve()


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
    for k in sorted(fs.find(tkey), key=lambda k: (k.endswith(".zmetadata"), k.endswith(METADATA), k)):
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
