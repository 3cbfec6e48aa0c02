"""Pixel kernels shared by every layer: validity masks, erosion, the edge proxy, equalisation and
normalisation (erosion, edges and equalisation compiled, loaded on first use, so reading a raster never
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
    """3x3 binary erosion with invalid borders (compiled)."""
    from rastalign._kernels._blocks import erode3 as _erode3

    v = np.ascontiguousarray(valid, bool)
    out = np.empty(v.shape, bool)
    _erode3(v.view(np.uint8), out.view(np.uint8))
    return out


def edge_proxy(img, valid):
    """Gradient magnitude (central differences, float32), zero on and next to invalid pixels: ``(edges,
    near)``, ``near`` the pixels whose differences see valid pixels only (:func:`erode3`). Compiled, one
    pass."""
    from rastalign._kernels._blocks import edges

    near = erode3(valid)
    out = np.empty(near.shape, np.float32)
    edges(np.ascontiguousarray(img, np.float32), near.view(np.uint8), out)
    return out, near


def value_range(img, valid):
    """``(lo, hi)``: the smallest and largest of ``img`` (as float32) over ``valid`` (``(inf, -inf)`` where none
    is valid); compiled, one pass."""
    from rastalign._kernels._blocks import valid_range

    return valid_range(np.ascontiguousarray(img, np.float32), np.ascontiguousarray(valid, bool).view(np.uint8))


def equalised(img, valid, bins=4096):
    """``img`` through its own cumulative histogram over the valid pixels (values in [0, 1], linear within each
    of ``bins`` equal bins; 0 where invalid): two images of one scene that differ by any monotonic radiometric
    transform (another band, inverted, bent) become the same image or its negative, so their edges match
    without a bias from the transform's slope. float32, three compiled passes over the image."""
    from rastalign._kernels._blocks import equalise

    x = np.ascontiguousarray(img, np.float32)
    ok = np.ascontiguousarray(valid, bool)
    out = np.zeros(x.shape, np.float32)
    lo, hi = value_range(x, ok)
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
