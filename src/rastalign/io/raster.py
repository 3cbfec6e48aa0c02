"""GeoTIFF / COG (and anything GDAL reads): inspection, lazy opening, window reads, metadata and checks.

Nothing here keeps a file handle beyond one call: window reads reopen the file, so
tasks stay small and picklable (a path and a box) under any dask scheduler.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from rastalign._kernels.pixels import validity
from rastalign.errors import InputError, ResourceError
from rastalign.geometry.grids import Grid
from rastalign.io.paths import check_input_file, gdal_path, is_url, network_error

# Refuse absurd declared sizes (bands x rows x cols) before allocating anything: 2**38
# samples is e.g. 4 bands of 260,000 x 260,000 px. RASTALIGN_MAX_PIXELS overrides it.
MAX_PIXELS = int(os.environ.get("RASTALIGN_MAX_PIXELS", 2 ** 38))


@dataclass(frozen=True)
class RasterInfo:
    """What the pipeline needs to know of a raster, read from its header only: its :class:`~rastalign.geometry.grids.Grid`
    (``shape``, ``transform``, ``crs``, ``pixel_to_world`` and ``resolution`` are the grid's) and its pixels."""

    path: str
    grid: Grid
    count: int
    dtype: str
    nodata: Optional[float]
    descriptions: tuple
    overviews: tuple = ()
    block_rows: int = 0  # rows of the file's blocks (tiles or strips); 0 when unknown

    @property
    def shape(self) -> Tuple[int, int]:
        return self.grid.shape

    @property
    def transform(self) -> tuple:
        return self.grid.transform

    @property
    def crs(self) -> Optional[str]:
        return self.grid.crs

    @property
    def pixel_to_world(self) -> np.ndarray:
        return self.grid.pixel_to_world

    @property
    def resolution(self) -> float:
        return self.grid.resolution


def open_dataset(path, overview_level=None):
    """Open a raster for reading: a local path (checked first: missing, folder, unreadable, empty), a URL
    (``s3://``, ``https://``) or a GDAL ``/vsi...`` path; a one-line :class:`InputError` otherwise. With
    ``overview_level`` (an index into the band's overviews) the dataset is that overview."""
    import rasterio
    from rasterio.errors import RasterioIOError

    remote = is_url(path)
    p = gdal_path(path) if remote else check_input_file(path, "raster")
    kw = {} if overview_level is None else {"overview_level": int(overview_level)}
    t0 = time.monotonic()
    try:  # GDAL names a 403 in a warning, then says the file does not exist
        with (gdal_warnings() if remote else contextlib.nullcontext([])) as said:
            return rasterio.open(p, **kw)
    except RasterioIOError as exc:
        if remote:  # how long it took tells a store that stopped answering from one that refused
            raise InputError(network_error(path, " ".join(said + [gdal_cause(exc)]),
                                           seconds=time.monotonic() - t0)) from None
        raise InputError(f"not a readable raster: {path} ({str(exc).splitlines()[0][:160]})") from None


_SAID = threading.local()  # the list collecting GDAL's warnings in this thread, if any


class _Collect(logging.Filter):
    """On rasterio's GDAL loggers: a warning raised in a thread inside :func:`gdal_warnings` goes to its
    list instead of stderr (other threads' warnings pass)."""

    def filter(self, record):
        said = getattr(_SAID, "said", None)
        if said is None or record.levelno < logging.WARNING:
            return True
        said.append(record.getMessage())
        return False


_COLLECT = _Collect()
GDAL_LOGGERS = ("rasterio._env", "rasterio._err")  # GDAL's messages when opening, and when reading


@contextlib.contextmanager
def gdal_warnings():
    """Collect (and keep off stderr) what GDAL warns in this thread while a remote file is opened or read:
    the cause of a failure is often there (a 403, ``response_code=0`` when the store does not answer), and
    it belongs in the one error line, not before it. Other threads' warnings are left alone."""
    for name in GDAL_LOGGERS:
        logger = logging.getLogger(name)
        if _COLLECT not in logger.filters:
            logger.addFilter(_COLLECT)
    outer = getattr(_SAID, "said", None)
    _SAID.said = said = []
    try:
        yield said
    finally:
        _SAID.said = outer


def inspect_raster(path) -> RasterInfo:
    """Read the header of ``path`` (on a worker when a cluster is active); raise :class:`InputError` on
    anything unusable."""
    from rastalign.runtime.scheduler import on_cluster

    return on_cluster(_inspect_raster, path)


def _inspect_raster(path) -> RasterInfo:
    with open_dataset(path) as ds:
        if ds.count < 1 or ds.width < 1 or ds.height < 1:
            raise InputError(f"raster has no pixels: {path}")
        if ds.width * ds.height * ds.count > MAX_PIXELS:
            raise InputError(f"raster declares an absurd size ({ds.count} band(s) of {ds.height} x {ds.width} px, "
                             f"more than {MAX_PIXELS:.3g} samples; set RASTALIGN_MAX_PIXELS to allow it): {path}")
        if len(set(ds.dtypes)) != 1:
            raise InputError(f"bands of different data types are not supported: {path}")
        t = ds.transform
        grid = Grid((ds.height, ds.width), (t.a, t.b, t.c, t.d, t.e, t.f), ds.crs.to_wkt() if ds.crs else None,
                    "Point" if ds.tags().get("AREA_OR_POINT", "").lower() == "point" else "Area")
        return RasterInfo(str(path), grid, ds.count, ds.dtypes[0], ds.nodata, tuple(ds.descriptions),
                          tuple(ds.overviews(1)), int(ds.block_shapes[0][0]))


def read_window(path, box, bands=None, nodata=None, dataset=None):
    """Read ``box = (y0, y1, x0, x1)`` of ``bands`` (1-based list; all when None).

    Returns ``(data, valid)``: data (bands, rows, cols) in the file's dtype and the
    validity mask combining ``nodata`` (the given value, else the file's), NaN/Inf and
    the file's internal mask. ``dataset``: an already open rasterio dataset of ``path``
    to read through (kept open by the caller, e.g. for many small windows).
    """
    from rasterio.enums import MaskFlags
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    remote = is_url(path)
    y0, y1, x0, x1 = (int(v) for v in box)
    win = Window(x0, y0, x1 - x0, y1 - y0)
    with (contextlib.nullcontext(dataset) if dataset is not None else open_dataset(path)) as ds:
        idx = list(bands) if bands is not None else list(range(1, ds.count + 1))
        check_memory(len(idx) * (y1 - y0) * (x1 - x0) * np.dtype(ds.dtypes[0]).itemsize, f"reading {path}")
        t0 = time.monotonic()
        try:
            with (gdal_warnings() if remote else contextlib.nullcontext([])) as said:
                data = ds.read(idx, window=win)
                ok = validity(data, nodata if nodata is not None else ds.nodata)
                flags = ds.mask_flag_enums[0]
                if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
                    ok &= ds.read_masks(idx[0], window=win) > 0
        except RasterioError as exc:
            if remote:  # GDAL's warnings say "response_code=0" when the store did not answer
                msg = network_error(path, " ".join(said + [gdal_cause(exc)]), seconds=time.monotonic() - t0)
                raise InputError(msg if msg.startswith("cannot read ") else f"cannot read {path}: {msg}") from None
            raise InputError(f"cannot read {path} (truncated or corrupt?): {gdal_cause(exc)}") from None
    return data, ok


def gdal_cause(exc) -> str:
    """The most specific message in a rasterio exception chain (GDAL's own error, not the wrapper)."""
    msgs = []
    while exc is not None and len(msgs) < 8:
        text = " ".join(str(exc).split())
        if text and "See previous exception" not in text:
            msgs.append(text)
        exc = exc.__cause__ or exc.__context__
    return (msgs[-1] if msgs else "read failed")[:200]


CHECKED_BYTES = 64 * 2 ** 20  # reads smaller than this are not checked (a native window, a strip of tiles)


def check_memory(nbytes, what):
    """Raise :class:`ResourceError` before allocating ``nbytes`` when it exceeds the available memory (for
    ``nbytes`` of at least :data:`CHECKED_BYTES`: asking the system costs 0.2 ms, a tenth of a small read)."""
    if nbytes < CHECKED_BYTES:
        return
    try:
        import psutil

        avail = psutil.virtual_memory().available
    except Exception:  # noqa: BLE001 - no psutil, no /proc: let numpy decide
        return
    if nbytes > 0.9 * avail:
        raise ResourceError(f"{what} needs {nbytes / 2 ** 30:.1f} GiB, more than the {avail / 2 ** 30:.1f} GiB "
                            f"of memory available: use --split-factor or --chunks for smaller chunks")


def read_metadata(path) -> dict:
    """What describes the pixels of ``path``: dataset tags, and per band its tags, description, units,
    scale/offset and colour interpretation (picklable, so a worker can read it)."""
    with open_dataset(path) as src:
        return {"tags": src.tags(), "band_tags": [src.tags(i) for i in range(1, src.count + 1)],
                "descriptions": list(src.descriptions), "units": list(src.units), "scales": list(src.scales),
                "offsets": list(src.offsets), "colorinterp": list(src.colorinterp)}


def copy_metadata(src_path, ds):
    """Copy what describes the pixels of ``src_path`` onto the open dataset ``ds`` (same band count), read
    where the tasks run. An aligned image is the same data, so none of it may be lost."""
    from rastalign.runtime.scheduler import on_cluster

    m = on_cluster(read_metadata, src_path)
    ds.update_tags(**m["tags"])
    n = min(len(m["band_tags"]), ds.count)
    for i in range(1, n + 1):
        if m["band_tags"][i - 1]:
            ds.update_tags(i, **m["band_tags"][i - 1])
        if m["descriptions"][i - 1]:
            ds.set_band_description(i, m["descriptions"][i - 1])
        if m["units"][i - 1]:
            ds.set_band_unit(i, m["units"][i - 1])
    if any(v != 1.0 for v in m["scales"][:n]) or any(v != 0.0 for v in m["offsets"][:n]):
        ds.scales, ds.offsets = m["scales"][:n], m["offsets"][:n]
    if len(m["colorinterp"]) == ds.count:
        try:
            ds.colorinterp = m["colorinterp"]
        except Exception:  # noqa: BLE001 - e.g. palette without a colormap: keep GDAL's default
            pass


class IncompleteWrite(Exception):
    """The written file does not hold every block it declares (a write failed without an exception)."""


def verify_complete(path, shape, count):
    """Check that ``path`` reopens with the declared shape and that every block of every band was written.

    GDAL can report a failed flush on close only on stderr; renaming such a file into
    place would publish a truncated image. Reading the block offsets costs microseconds.
    """
    import rasterio

    try:
        nbytes = os.path.getsize(path)
        with rasterio.open(path) as ds:
            if (ds.height, ds.width) != tuple(shape) or ds.count != count:
                raise IncompleteWrite(f"file reads back as {ds.count}x{ds.height}x{ds.width}")
            bh, bw = ds.block_shapes[0]
            nby, nbx = -(-ds.height // bh), -(-ds.width // bw)
            for b, j, i in itertools.product(range(1, ds.count + 1), range(nby), range(nbx)):
                size = ds.get_tag_item(f"BLOCK_SIZE_{i}_{j}", "TIFF", bidx=b)
                offset = ds.get_tag_item(f"BLOCK_OFFSET_{i}_{j}", "TIFF", bidx=b)
                if not size or not offset or int(size) <= 0 or int(offset) + int(size) > nbytes:
                    raise IncompleteWrite(f"block ({j}, {i}) of band {b} is missing or truncated")
    except IncompleteWrite:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable header: the write failed
        raise IncompleteWrite(f"file does not read back ({gdal_cause(exc)})") from None


def write_failure_reason(path, exc) -> str:
    """Why writing ``path`` failed: a full disk, the file size limit, or the library's own message.

    GDAL reports a full disk as a bare "write error", so the file system is asked directly.
    """
    import errno
    import resource

    err = getattr(exc, "errno", None)
    if err == errno.ENOSPC:
        return "no space left on device"
    if err == errno.EFBIG:
        return "file too large (file size limit reached)"
    folder = Path(path).parent
    try:
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
        if free < 4 * 2 ** 20:
            return f"no space left on device ({free / 2 ** 10:.0f} KiB free in {folder})"
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        if size >= soft - 4 * 2 ** 20:
            return f"file too large (file size limit {soft} bytes reached, see ulimit -f)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return gdal_cause(exc)
