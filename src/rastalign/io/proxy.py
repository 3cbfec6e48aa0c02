"""Proxies: decimated images for estimation, and their edge proxies.

A proxy is a block mean over *valid* pixels (a proxy pixel is valid when at least half
of its block is), read strip by strip, each strip a task of the active dask scheduler, so
memory stays bounded and on a cluster the workers read the inputs. Strips are whole rows of
the file's tiles, so every tile is decoded once. When the file has an overview at most the
factor, the strip is read from it instead (far fewer bytes, which counts most in object
storage) and averaged onto the exact blocks by area weights (:func:`_from_overview`). The edge proxy is the
gradient magnitude, zero on and next to invalid pixels, so the borders of nodata,
clouds masked as nodata and swath edges never look like structure.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from rastalign._kernels.blocks import block_mean
from rastalign._kernels.pixels import validity
from rastalign.io.raster import open_dataset, read_window

STRIP_BYTES = 64 * 2 ** 20


def decimation_factor(shape, max_size=4096, pixel_size=None, solve_resolution=None) -> int:
    """Integer factor so the proxy's long side is at most ``max_size`` (or matches the
    requested solve resolution in CRS units, never finer than native)."""
    if solve_resolution:
        return max(1, int(round(solve_resolution / pixel_size)))
    return max(1, int(math.ceil(max(shape) / float(max_size))))


def read_proxy(info, band, factor, nodata=None, box=None):
    """Decimated image of 0-based ``band`` of the raster ``info`` (its :class:`~rastalign.io.raster.RasterInfo`)
    over ``box = (y0, y1, x0, x1)`` (default: all) and its validity: strips of whole blocks decimated by the
    active dask scheduler's workers (threads, processes or a cluster), so only the proxy comes back."""
    return read_proxies((info, band, factor, nodata, box))[0]


def read_proxies(*requests):
    """:func:`read_proxy` of each ``(info, band, factor, nodata, box)`` in one compute: the strips of all the
    rasters share the workers, so one raster's last strips overlap the next one's first."""
    import dask

    from rastalign.runtime.scheduler import compute

    task, array_task = dask.delayed(proxy_strip, pure=True), dask.delayed(array_strip, pure=True)
    strips = []
    for info, band, factor, nodata, box in requests:
        by0, by1, bx0, bx1 = box if box is not None else (0, info.shape[0], 0, info.shape[1])
        level = overview_level(info, factor) if nodata is None else None
        overview = None if level is None else (level, tuple(info.shape))
        row_bytes = (bx1 - bx0) * (np.dtype(info.dtype).itemsize + 2)
        rows = strip_rows(by0, by1, factor, info.block_rows, STRIP_BYTES // max(row_bytes, 1))
        if getattr(info, "data", None) is not None:  # an array: its slices are the tasks' arguments
            strips.append([array_task(info.pixels(band, (y0, y1, bx0, bx1)), factor, info.nodata_or(nodata))
                           for y0, y1 in rows])
            continue
        strips.append([task(str(info.path), band, (y0, y1, bx0, bx1), factor, nodata, overview) for y0, y1 in rows])
    return [(np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])) for parts in compute(*strips)]


def overview_level(info, factor):
    """Index of the file's coarsest overview at most ``factor``, or None. (A user's nodata value is unknown to
    the overviews: the caller reads full resolution then.)"""
    usable = [(o, i) for i, o in enumerate(info.overviews) if 1 < o <= factor]
    return max(usable)[1] if usable else None


def strip_rows(y0, y1, factor, block_rows, max_rows):
    """``(start, stop)`` rows of strips covering ``[y0, y1)``: every start but the first ``factor``-aligned to
    ``y0`` (a proxy block never straddles two strips) and, when possible, on a block boundary of the file, with
    whole rows of blocks per strip (at least one, up to ``max_rows``), so no block is decoded by two strips."""
    step = max(factor, max_rows // factor * factor)
    first = y0 + step
    if block_rows > 0:
        unit = math.lcm(factor, block_rows)
        if unit <= 4 * max(max_rows, factor):
            step = max(1, max_rows // unit) * unit
            # factor-aligned starts on block boundaries, every ``unit`` rows (none when y0 is off that grid)
            aligned = [y for y in range(y0 + factor, y0 + unit + 1, factor) if y % block_rows == 0]
            first = aligned[0] + max(0, y0 + step - aligned[0]) // unit * unit if aligned else y0 + step
    starts = [y0] + list(range(first, y1, step))
    return [(a, min(b, y1)) for a, b in zip(starts, starts[1:] + [y1])]


class SharedProxy:
    """A reference's decimated image over the whole frame, read once and cropped by every scene of a stack.

    A scene's fixed box is snapped outwards to whole blocks (:meth:`snap`), so its crop holds the same
    block means a read of that box would give.
    """

    def __init__(self, info, band, factor, nodata=None):
        self.key = (int(band), factor, nodata)
        self.img, self.valid = read_proxy(info, band, factor, nodata)
        self.shape = tuple(info.shape)
        self._made, self._lock = None, threading.Lock()

    def derived(self, key, valid, make):
        """``make()``, or what it returned for the last scene when that scene asked with the same ``key`` and the
        same ``valid`` mask: work on the reference's crop that every scene of a stack repeats (its pyramid of
        proxies) is done once per distinct crop and mask (one kept; scenes wait for each other's)."""
        with self._lock:
            if self._made is None or self._made[0] != key or not np.array_equal(self._made[1], valid):
                self._made = (key, np.array(valid, copy=True), make())
            return self._made[2]

    def serves(self, band, factor, nodata) -> bool:
        return self.key == (int(band), factor, nodata)

    def snap(self, box):
        f = self.key[1]
        y0, y1, x0, x1 = box
        return (y0 // f * f, min(-(-y1 // f) * f, self.shape[0]), x0 // f * f, min(-(-x1 // f) * f, self.shape[1]))

    def crop(self, box):
        f = self.key[1]
        y0, y1, x0, x1 = box
        rows, cols = slice(y0 // f, -(-y1 // f)), slice(x0 // f, -(-x1 // f))
        return self.img[rows, cols], self.valid[rows, cols]


@dataclass(frozen=True)
class PreparedRaster:
    """A raster inspected and decimated once, for many estimations against it (a stack's reference): its
    :class:`~rastalign.io.raster.RasterInfo` and its :class:`SharedProxy`. Given in place of the fixed image's
    path, every scene's estimation crops the shared proxy instead of reading the reference again."""

    info: object
    proxy: SharedProxy

    @property
    def path(self) -> str:
        return str(self.info.path)


def proxy_strip(path, band, box, factor, nodata, overview=None):
    """One strip of :func:`read_proxy`: ``(block means, validity)`` of ``box``, from the file's overview
    ``overview = (index, full shape)`` when given (:func:`_from_overview`), else from its full-resolution pixels."""
    if overview is not None:
        return _from_overview(path, band, box, factor, *overview)
    data, ok = read_window(path, box, bands=[band + 1], nodata=nodata)
    return _decimated(data[0], ok, factor)


def array_strip(pixels, factor, nodata):
    """One strip of :func:`read_proxy` from an array's pixels (2-D), invalid where NaN/Inf or ``nodata``."""
    pixels = np.asarray(pixels)
    return _decimated(pixels, validity(pixels[None], nodata), factor)


def _decimated(data, ok, factor):
    if factor == 1:
        return data.astype(np.float32), ok
    return block_mean(data, ok, factor)


def _from_overview(path, band, box, factor, level, shape):
    """Block means over the ``factor``-px blocks of ``box`` from overview ``level``, by area weights.

    An overview of a side ``n`` not divisible by its factor has ``ceil(n / o)`` pixels, each ``n / ceil(n / o)``
    full-resolution pixels wide, so its pixels are not blocks of the image (GDAL's averaged read, which assumes
    they are, drifts up to 4 px across 10980 px at ``o = 8``). Here each block mean weights the overview pixels
    by the length of the block each covers, on their true grid: the geometry is exact up to the rounding of
    the overview's own footprints (half a pixel, not growing across the image). A block is valid when at least
    half of it is covered by valid overview pixels."""
    y0, y1, x0, x1 = box
    with open_dataset(path, overview_level=level) as ov:
        sy, sx = shape[0] / ov.height, shape[1] / ov.width
        p0, p1 = int(y0 // sy), min(ov.height, int(math.ceil(y1 / sy)))
        q0, q1 = int(x0 // sx), min(ov.width, int(math.ceil(x1 / sx)))
        data, valid = read_window(path, (p0, p1, q0, q1), bands=[band + 1], dataset=ov)
    ys, xs = _area_weights(y0, y1, factor, sy, p0), _area_weights(x0, x1, factor, sx, q0)
    total = _weighted(_weighted(np.where(valid, data[0], 0.0), xs, axis=1), ys, axis=0)
    n = _weighted(_weighted(valid.astype(np.float64), xs, axis=1), ys, axis=0)
    ok = n >= 0.5 * np.outer(ys[2], xs[2])
    return np.where(ok, total / np.maximum(n, 1e-12), 0.0).astype(np.float32), ok


def _area_weights(a0, a1, factor, scale, p0):
    """``(index, weight, size)`` along one axis: for each ``factor``-px block of ``[a0, a1)``, the overview pixels
    it touches (``index``, relative to ``p0``; each pixel ``scale`` full-resolution px wide) and how much of the
    block each covers (``weight``, in overview px; 0 for padding), and the block's size in overview px."""
    lo = a0 + factor * np.arange(-(-(a1 - a0) // factor), dtype=np.float64)
    hi = np.minimum(lo + factor, a1)
    first = np.floor(lo / scale)
    p = first[:, None] + np.arange(int(math.ceil(factor / scale)) + 1)[None, :]
    w = np.clip(np.minimum(p + 1.0, hi[:, None] / scale) - np.maximum(p, lo[:, None] / scale), 0.0, None)
    index = (p - p0).astype(np.int64)
    return index, w, (hi - lo) / scale


def _weighted(a, weights, axis):
    """Weighted sums of ``a`` along ``axis`` by :func:`_area_weights`' ``(index, weight, size)``."""
    index, w, _ = weights
    index = np.clip(index, 0, a.shape[axis] - 1)  # padding taps past the read rows have weight 0
    if axis == 1:
        return np.einsum("rjk,jk->rj", a[:, index], w)
    return np.einsum("jkc,jk->jc", a[index], w)
