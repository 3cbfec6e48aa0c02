"""Pixel kernels shared by every layer: validity masks, erosion, the edge proxy, equalisation and
normalisation, in numpy (equalisation's loops compiled, loaded on first use, so reading a raster never
loads them). Arrays in, arrays out."""
import numpy as np


def validity(data, nodata):
    """Valid pixels of a (bands, rows, cols) block: finite, and not nodata in every band."""
    data = np.asarray(data)
    check = nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata))
    if data.shape[0] == 1:  # one band: one pass per test, no stacked intermediate
        band = data[0]
        if data.dtype.kind != "f":
            return band != nodata if check else np.ones(band.shape, bool)
        ok = np.isfinite(band)
        if check:
            ok &= band != nodata
        return ok
    ok = np.isfinite(data).all(axis=0) if data.dtype.kind == "f" else np.ones(data.shape[1:], bool)
    if check:
        ok &= ~(data == nodata).all(axis=0)
    return ok


def erode3(valid):
    """3x3 binary erosion with invalid borders, by shifted ANDs (fast, bounded memory)."""
    v = np.asarray(valid, bool)
    out = v.copy()
    out[0, :] = out[-1, :] = False
    out[:, 0] = out[:, -1] = False
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                out[1:-1, 1:-1] &= v[1 + dy:v.shape[0] - 1 + dy, 1 + dx:v.shape[1] - 1 + dx]
    return out


def edge_proxy(img, valid):
    """Gradient magnitude (central differences), zero on and next to invalid pixels."""
    x = np.where(valid, np.asarray(img, np.float32), np.float32(0))  # invalid (NaN/Inf) values never enter
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    gx[:, 1:-1] = x[:, 2:] - x[:, :-2]
    gy[1:-1, :] = x[2:, :] - x[:-2, :]
    e = np.sqrt(gx * gx + gy * gy)
    near = erode3(valid)
    e[~near] = 0.0
    return e, near


def equalised(img, valid, bins=4096):
    """``img`` through its own cumulative histogram over the valid pixels (values in [0, 1], linear within each
    of ``bins`` equal bins; 0 where invalid): two images of one scene that differ by any monotonic radiometric
    transform (another band, inverted, bent) become the same image or its negative, so their edges match
    without a bias from the transform's slope. float32, three compiled passes over the image."""
    from rastalign._kernels._blocks import equalise

    x = np.ascontiguousarray(img, np.float32)
    ok = np.ascontiguousarray(valid, bool)
    out = np.zeros(x.shape, np.float32)
    if not ok.any():
        return out
    v = x[ok]
    lo, hi = float(v.min()), float(v.max())
    if hi > lo:
        equalise(x, ok.view(np.uint8), lo, hi, int(bins), out)
    return out


def normalised(img, valid):
    """Zero-mean, unit-variance image over its valid pixels (0 where invalid)."""
    if not valid.any():
        return np.zeros_like(img, np.float32)
    v = img[valid].astype(np.float64)
    sd = v.std()
    out = (img - v.mean()) / (sd if sd > 0 else 1.0)
    out[~valid] = 0.0
    return out.astype(np.float32)
