"""FITS images: inspection, lazy per-chunk reads, a lazy xarray view, and a streamed writer.

Reads reopen the file (memory-mapped) for every window, so a reader is just a path, an
HDU index and a box: picklable, and cheap on any dask scheduler. Scaled data
(BSCALE/BZERO), big-endian data, integer ``BLANK`` values and NaN/Inf are handled;
invalid pixels come back as ``valid == False`` (and NaN in float data).
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import numpy as np

from rastalign.errors import InputError
from rastalign.io.fits_cards import wcs_of
from rastalign.io.paths import check_input_file, filesystem, is_store_timeout, is_url, network_error, timeout_text

log = logging.getLogger(__name__)
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz")


def is_fits_file(path) -> bool:
    """A FITS file by its suffix, or (for a local file with another suffix) by its first card."""
    name = str(path).lower()
    if name.endswith(FITS_SUFFIXES):
        return True
    if "://" in name or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(9) == b"SIMPLE  ="
    except OSError:
        return False


@dataclass(frozen=True)
class FitsInfo:
    """What is needed of one FITS image HDU, from its header only."""

    path: str
    ext: int  # resolved HDU index
    extname: str
    shape: Tuple[int, int]  # (rows, cols)
    dtype: str  # dtype of the scaled data as read
    header: object  # astropy.io.fits.Header (picklable)

    @property
    def wcs(self):
        return wcs_of(self.header)


def open_hdul(path):
    """Open a FITS file: a local path (memory-mapped), or an ``s3://`` / ``https://`` URL through fsspec,
    which fetches only the headers and the sections read."""
    from astropy.io import fits

    if is_url(path):
        t0 = time.monotonic()
        try:
            if str(path).lower().startswith(("s3://", "s3a://")):  # through the file system whose every request
                fs, key = filesystem(path)  # is bounded by RASTALIGN_STORE_TIMEOUT; it fetches what is read
                return fits.open(fs.open(key, "rb"), lazy_load_hdus=True, do_not_scale_image_data=True)
            return fits.open(str(path), use_fsspec=True, lazy_load_hdus=True, do_not_scale_image_data=True)
        except Exception as exc:  # noqa: BLE001 - fsspec/botocore/aiohttp/astropy raise many kinds
            if is_store_timeout(exc):
                raise InputError(f"cannot read {path}: {timeout_text(time.monotonic() - t0)}") from None
            cause = "404 not found" if isinstance(exc, FileNotFoundError) else \
                "403 access denied" if isinstance(exc, PermissionError) else f"{type(exc).__name__}: {exc}"
            raise InputError(network_error(path, cause, "FITS file")) from None
    p = check_input_file(path, "FITS")
    try:
        return fits.open(p, memmap=True, lazy_load_hdus=True, do_not_scale_image_data=True)
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds
        raise InputError(f"not a readable FITS file: {path} ({str(exc).splitlines()[0][:160]})") from None


def _is_image(hdu):
    from astropy.io import fits

    return isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.header.get("NAXIS", 0) > 0


def _resolve(hdul, ext, path):
    """Index of the HDU named by ``ext`` (int index, name, or None = first image HDU)."""
    n = len(hdul)
    if ext is None:
        for i, h in enumerate(hdul):
            if _is_image(h):
                return i
        raise InputError(f"no image HDU in {path} ({n} HDUs, none with image data)")
    if isinstance(ext, str) and ext.strip().lstrip("-").isdigit():
        ext = int(ext)
    if isinstance(ext, (int, np.integer)):
        if not 0 <= ext < n:
            raise InputError(f"HDU {ext} not found in {path}: the file has {n} HDU(s) (0..{n - 1})")
        return int(ext)
    names = [h.name for h in hdul]
    for i, name in enumerate(names):
        if name.upper() == str(ext).upper():
            return i
    raise InputError(f"HDU {ext!r} not found in {path}: its HDUs are {', '.join(repr(x) for x in names)}")


def _check_complete(hdul, i, path):
    """Refuse a local file that ends before the pixels of HDU ``i`` do (a truncated download or copy)."""
    from astropy.io import fits

    hdu = hdul[i]
    if isinstance(hdu, fits.CompImageHDU) or is_url(path):
        return
    hdr = hdu.header
    nbytes = abs(int(hdr["BITPIX"])) // 8 * int(np.prod([int(hdr.get(f"NAXIS{k}", 0)) for k in
                                                          range(1, int(hdr["NAXIS"]) + 1)]))
    end, size = hdul.fileinfo(i)["datLoc"] + nbytes, os.path.getsize(path)
    if size < end:
        raise InputError(f"cannot read {path}: truncated or corrupt FITS (HDU {i} needs {end} bytes, the file "
                         f"has {size})")


def resolve_ext(path, ext):
    """Index of HDU ``ext`` (index or name) of ``path``; :class:`InputError` when absent."""
    with open_hdul(path) as hdul:
        return _resolve(hdul, ext, path)


def inspect_fits(path, ext=None) -> FitsInfo:
    """Read the header of image HDU ``ext`` (on a worker when a cluster is active); refuse missing HDUs,
    tables, cubes and empty HDUs."""
    from rastalign.runtime.scheduler import on_cluster

    return on_cluster(_inspect_fits, path, ext)


def _inspect_fits(path, ext=None) -> FitsInfo:
    # astropy warns of a short file (twice, as it reads on); _check_complete says it once, as an error
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="File may have been truncated")
        with open_hdul(path) as hdul:
            i = _resolve(hdul, ext, path)
            hdu = hdul[i]
            _check_complete(hdul, i, path)
            if not _is_image(hdu):
                kind = type(hdu).__name__
                raise InputError(f"HDU {i} ({hdu.name}) of {path} holds no image data ({kind}, NAXIS=0)")
            hdr = hdu.header  # a tile-compressed HDU's is its image's (astropy hides the Z cards)
            naxis = int(hdr["NAXIS"])
            dims = [int(hdr.get(f"NAXIS{k}", 1)) for k in range(naxis, 0, -1)]
            if naxis < 2:
                raise InputError(f"HDU {i} of {path} is {naxis}-D; a 2-D image is needed")
            if any(d != 1 for d in dims[:-2]):
                raise InputError(f"HDU {i} of {path} is a {naxis}-D cube of shape {tuple(dims)}; "
                                 f"a 2-D image is needed (extract one plane first)")
            shape = (dims[-2], dims[-1])
            if min(shape) < 1:
                raise InputError(f"HDU {i} of {path} has no pixels (shape {shape})")
            bitpix = int(hdr["BITPIX"])
            scaled = "BSCALE" in hdr or "BZERO" in hdr
            dtype = {-32: "float32", -64: "float64"}.get(bitpix, "float64" if scaled and bitpix > 16 else "float32")
            out_hdr = hdu.header.copy()
    return FitsInfo(str(path), i, hdu.name, shape, dtype, out_hdr)


def read_fits_window(path, ext, box, mask_ext=None, dtype="float32"):
    """Read ``box = (y0, y1, x0, x1)`` of HDU ``ext`` (a resolved index) as ``(data, valid)``.

    ``data`` is (1, rows, cols) native-endian ``dtype`` with BSCALE/BZERO applied and
    NaN where invalid; ``valid`` is False at NaN/Inf, integer ``BLANK`` and, with
    ``mask_ext``, where that HDU (same file) is non-zero. Module-level so that
    a :class:`rastalign.io.sources.FitsSource` can read through it in any task.
    """
    y0, y1, x0, x1 = (int(v) for v in box)
    with open_hdul(path) as hdul:
        hdu = hdul[ext]
        hdr = hdu.header
        lead = (0,) * (int(hdr["NAXIS"]) - 2)
        raw = np.asarray(hdu.section[lead + (slice(y0, y1), slice(x0, x1))])  # unscaled, file values
        bscale, bzero = float(hdr.get("BSCALE", 1.0)), float(hdr.get("BZERO", 0.0))
        blank = hdr.get("BLANK")
        data = raw.astype(dtype)  # native byte order
        if bscale != 1.0:
            data *= np.asarray(bscale, dtype)
        if bzero != 0.0:
            data += np.asarray(bzero, dtype)
        valid = np.isfinite(data)
        if blank is not None and raw.dtype.kind in "iu":
            valid &= raw != blank
        if mask_ext is not None:
            m = hdul[mask_ext]
            mnd = int(m.header["NAXIS"])
            valid &= np.asarray(m.section[(0,) * (mnd - 2) + (slice(y0, y1), slice(x0, x1))]) == 0
    data[~valid] = np.nan
    return data[None], valid


def read_fits(path, ext=None, mask_ext=None, dtype="float32"):
    """Whole image as ``(data (rows, cols), valid, info)``; refuses all-NaN frames."""
    info = inspect_fits(path, ext)
    if mask_ext is not None:
        mask_ext = resolve_ext(path, mask_ext)
    data, valid = read_fits_window(path, info.ext, (0, info.shape[0], 0, info.shape[1]), mask_ext, dtype)
    if not valid.any():
        raise InputError(f"HDU {info.ext} of {path} has no valid pixel: all {valid.size} are NaN/masked")
    return data[0], valid, info


class _LazyHDU:
    """Array-like over one HDU whose ``__getitem__`` reads only the requested section."""

    def __init__(self, path, ext, shape, dtype="float32"):
        self.path, self.ext, self.dtype = str(path), int(ext), np.dtype(dtype)
        self.shape = (1,) + tuple(shape)
        self.ndim = 3

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        ys = range(*key[1].indices(self.shape[1]))
        xs = range(*key[2].indices(self.shape[2]))
        if len(ys) == 0 or len(xs) == 0:
            return np.zeros((1, len(ys), len(xs)), self.dtype)[key[0]]
        data, _ = read_fits_window(self.path, self.ext, (ys.start, ys.stop, xs.start, xs.stop), dtype=self.dtype)
        return data[:, ::ys.step, ::xs.step][key[0]]


def open_fits(path, ext=None, chunks=2048):
    """Open a FITS image lazily as an ``xarray.DataArray`` (dims ``band, y, x``, dask-backed).

    Invalid pixels read as NaN. ``attrs`` hold ``fits_header`` (astropy Header), ``wcs``
    (astropy WCS or None), ``rastalign_path`` and ``rastalign_ext``.
    """
    import dask.array as da
    import xarray as xr

    info = inspect_fits(path, ext)
    if isinstance(chunks, int):
        chunks = (1, chunks, chunks)
    stamp = "remote" if is_url(path) else os.path.getmtime(path)
    arr = da.from_array(_LazyHDU(path, info.ext, info.shape), chunks=chunks, asarray=False, fancy=False,
                        name=f"fits-{Path(path).name}-{info.ext}-{stamp}")
    return xr.DataArray(arr, dims=("band", "y", "x"),
                        coords={"band": [1], "y": np.arange(info.shape[0]), "x": np.arange(info.shape[1])},
                        attrs={"fits_header": info.header, "wcs": info.wcs, "rastalign_path": str(path),
                               "rastalign_ext": info.ext}, name=info.extname or "data")
