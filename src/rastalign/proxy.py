"""Proxies: decimated images for estimation, and their edge proxies.

A proxy is a block mean over *valid* pixels (a proxy pixel is valid when at least half
of its block is), read strip by strip so memory stays bounded; when the file has a
suitable overview GDAL's averaged decimated read uses it. The edge proxy is the
gradient magnitude, zero on and next to invalid pixels, so the borders of nodata,
clouds masked as nodata and swath edges never look like structure.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .io.raster import read_window

STRIP_BYTES = 64 * 2 ** 20


def decimation_factor(shape, max_size=4096, pixel_size=None, solve_resolution=None) -> int:
    """Integer factor so the proxy's long side is at most ``max_size`` (or matches the
    requested solve resolution in CRS units, never finer than native)."""
    if solve_resolution:
        return max(1, int(round(solve_resolution / pixel_size)))
    return max(1, int(math.ceil(max(shape) / float(max_size))))


def block_mean(data, valid, f):
    """Mean of valid pixels over ``f x f`` blocks (partial edge blocks included)."""
    ny, nx = data.shape
    by, bx = -(-ny // f), -(-nx // f)
    pad = ((0, by * f - ny), (0, bx * f - nx))
    d = np.pad(np.where(valid, data, 0.0).astype(np.float64), pad)
    v = np.pad(valid.astype(np.float64), pad)
    s = d.reshape(by, f, bx, f).sum(axis=(1, 3))
    n = v.reshape(by, f, bx, f).sum(axis=(1, 3))
    # a block is valid when at least half of its in-image pixels are
    inside = np.pad(np.ones((ny, nx)), pad).reshape(by, f, bx, f).sum(axis=(1, 3))
    ok = n >= 0.5 * inside
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / np.maximum(n, 1), 0.0)
    return mean.astype(np.float32), ok


def read_proxy(path, band, shape, factor, nodata=None):
    """Decimated image of 0-based ``band`` and its validity, reading strips of whole blocks."""
    ny, nx = shape
    if factor == 1:
        data, ok = read_window(path, (0, ny, 0, nx), bands=[band + 1], nodata=nodata)
        return data[0].astype(np.float32), ok
    rows_per_strip = max(factor, (STRIP_BYTES // max(nx * 8, 1)) // factor * factor)
    parts, masks = [], []
    for y0 in range(0, ny, rows_per_strip):
        y1 = min(y0 + rows_per_strip, ny)
        data, ok = read_window(path, (y0, y1, 0, nx), bands=[band + 1], nodata=nodata)
        m, v = block_mean(data[0], ok, factor)
        parts.append(m)
        masks.append(v)
    return np.vstack(parts), np.vstack(masks)


def edge_proxy(img, valid):
    """Gradient magnitude (Sobel), zero on and next to invalid pixels."""
    x = np.where(valid, img, np.mean(img[valid]) if valid.any() else 0.0).astype(np.float64)
    gx = ndimage.sobel(x, axis=1)
    gy = ndimage.sobel(x, axis=0)
    e = np.hypot(gx, gy)
    near = ndimage.binary_erosion(valid, structure=np.ones((3, 3), bool), border_value=0)
    e[~near] = 0.0
    return e.astype(np.float32), near


def normalised(img, valid):
    """Zero-mean, unit-variance image over its valid pixels (0 where invalid)."""
    if not valid.any():
        return np.zeros_like(img, np.float32)
    v = img[valid].astype(np.float64)
    sd = v.std()
    out = (img - v.mean()) / (sd if sd > 0 else 1.0)
    out[~valid] = 0.0
    return out.astype(np.float32)


def downsample2(img, valid):
    return block_mean(img, valid, 2)
