"""The FITS sink's file writer: a primary image HDU (and an optional uint8 mask extension) written in place
into a file of the final size under a temporary name, then renamed. Rows, columns and bands come as
blocks, in any order, from the chunked warp."""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np

from rastalign._kernels.pixels import validity
from rastalign.errors import OutputError
from rastalign.io.fits_cards import output_header
from rastalign.sinks.atomic import discard, temp_path_beside
from rastalign.sinks.carried import Carried, cards
from rastalign.sinks.stream import consume

BITPIX = {"float32": -32, "float64": -64, "uint8": 8, "int16": 16, "int32": 32, "int64": 64}


def fits_dtype(dtype):
    """FITS has no unsigned 16/32-bit pixels: widen them losslessly (uint16 -> int32, uint32 -> int64)."""
    return {"uint16": "int32", "uint32": "int64", "int8": "int16"}.get(np.dtype(dtype).name, np.dtype(dtype).name)


class FitsWriter:
    """Streamed FITS writer.

    The file is laid out in full (header, then the padded data block) under a temporary
    name beside ``path`` and memory-mapped; ``write(box, data)`` stores one chunk
    ``(bands, rows, cols)`` at ``box = (y0, y1, x0, x1)``; ``commit()`` flushes and renames
    it into place; ``abort()`` (or an exception inside ``with``) removes it. A single band
    is written as a 2-D primary HDU, several as a cube. ``mask=True`` adds a ``MASK``
    image extension (uint8) written with ``write_mask(box, mask)``.
    """

    def __init__(self, path, shape, count=1, dtype="float32", header=None, wcs_header=None, nodata=None,
                 descriptions=None, tags=None, mask=False):
        from astropy.io import fits

        self.final = Path(path)
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in BITPIX:
            raise OutputError(f"FITS output cannot store {self.dtype.name}; use one of {', '.join(BITPIX)}")
        ny, nx = int(shape[0]), int(shape[1])
        self.count = int(count)
        self.shape = (ny, nx)
        dims = (ny, nx) if self.count == 1 else (self.count, ny, nx)
        hdr = fits.Header([("SIMPLE", True), ("BITPIX", BITPIX[self.dtype.name]), ("NAXIS", len(dims))]
                          + [(f"NAXIS{i}", n) for i, n in enumerate(reversed(dims), start=1)] + [("EXTEND", True)])
        if nodata is not None and self.dtype.kind in "iu":
            hdr["BLANK"] = int(nodata)

        body = output_header(header, wcs_header, tags)
        for i, d in enumerate(descriptions or [], start=1):
            if d:
                body[f"BANDNM{i}"] = str(d)[:60]
        hdr.extend(body, unique=False)
        head = hdr.tostring().encode("ascii")
        nbytes = ny * nx * self.count * self.dtype.itemsize
        self.offset = len(head)
        size = self.offset + nbytes + (-nbytes) % 2880
        self.mask_offset = None
        mhead = b""
        if mask:
            mh = fits.Header([("XTENSION", "IMAGE"), ("BITPIX", 8), ("NAXIS", 2), ("NAXIS1", nx), ("NAXIS2", ny),
                              ("PCOUNT", 0), ("GCOUNT", 1), ("EXTNAME", "MASK")])
            mh["COMMENT"] = "1 = no valid source data for this output pixel"
            mhead = mh.tostring().encode("ascii")
            self.mask_offset = size + len(mhead)
            size = self.mask_offset + ny * nx + (-(ny * nx)) % 2880
        self.tmp = temp_path_beside(self.final, ".fits")
        try:
            with open(self.tmp, "wb") as fh:
                fh.write(head)
                fh.truncate(size)
                if mask:
                    fh.seek(self.mask_offset - len(mhead))
                    fh.write(mhead)
            self.mm = np.memmap(self.tmp, dtype=self.dtype.newbyteorder(">"), mode="r+", offset=self.offset,
                                shape=(self.count, ny, nx))
            self.mmask = None if not mask else np.memmap(self.tmp, dtype=np.uint8, mode="r+",
                                                          offset=self.mask_offset, shape=(ny, nx))
        except OSError as exc:
            discard(self.tmp)
            raise OutputError(f"cannot create output {path}: {exc.strerror or exc}") from None

    def write(self, box, data):
        y0, y1, x0, x1 = (int(v) for v in box)
        self.mm[:, y0:y1, x0:x1] = np.asarray(data).reshape(self.count, y1 - y0, x1 - x0)

    def write_mask(self, box, mask):
        y0, y1, x0, x1 = (int(v) for v in box)
        self.mmask[y0:y1, x0:x1] = np.asarray(mask, np.uint8)

    def _close(self):
        for name in ("mm", "mmask"):
            m = getattr(self, name, None)
            if m is not None:
                m.flush()
                setattr(self, name, None)
                del m

    def commit(self):
        try:
            self._close()
            os.replace(self.tmp, self.final)
        except OSError as exc:
            raise OutputError(f"cannot write output {self.final}: {exc.strerror or exc}") from None
        finally:
            discard(self.tmp)

    def abort(self):
        try:
            self._close()
        finally:
            discard(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()


def _fits_block(block, box, cval, cval_mask, with_mask):
    block = np.asarray(block)
    bad = ~validity(block, None)
    if block.dtype.kind == "f" and not np.isnan(cval):
        block = block.copy()
        block[:, bad] = cval
    mask = np.where(bad, cval_mask, 0).astype(np.uint8) if with_mask else None
    return block, mask, int((~bad).sum())


def write_fits(arr, path, grid, nodata=None, carried: Carried = Carried(), cval=np.nan, cval_mask=1,
               mask=False) -> dict:
    """Stream the lazy ``arr`` into a FITS file (primary HDU; a cube for several bands) with ``carried``'s
    header (its WCS cards giving way to ``carried.wcs_header``'s) and cards; NaN becomes ``cval``; with
    ``mask`` a ``MASK`` extension (``cval_mask`` where no valid source pixel)."""
    nb, ny, nx = (int(v) for v in arr.shape)
    n_valid = 0
    with FitsWriter(path, (ny, nx), nb, arr.dtype.name, header=carried.header, wcs_header=carried.wcs_header,
                    nodata=nodata, descriptions=carried.descriptions, tags=cards(carried, grid), mask=mask) as w:
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
