"""The one scorer every tool's output goes through (no peer needed).

Every output is first put on the fixed (template) grid (:func:`to_fixed_grid`), then
compared window by window with the reference by :func:`rastalign.testing.pairs.window_shift`
(Hann-windowed cross-correlation + iterated least-squares matching, independent of any
aligner's own estimator). The residual misregistration of a window is the length of
its shift; a case is summarised by the median, p95 and RMS over windows.

Sparse images (star fields) can give the integer cross-correlation peak on a wrong
star pair in a window; a window whose shift exceeds ``confirm_px`` is therefore
re-measured in a window twice as large around the same centre, and that measurement
is kept. A genuinely misaligned image stays misaligned in the larger window, so this
removes measurement blunders, not tool errors (the tests check both).
"""
from __future__ import annotations

import numpy as np

SILENT_P95_PX = 1.0


def measure(aligned, reference, valid, window=128, step=None, min_ncc=None, confirm_px=1.0):
    """Residual shifts ``(n, 4)``: ``x_centre, y_centre, dx, dy`` (px), see the module docstring."""
    from rastalign.testing.pairs import measure_misregistration, window_shift

    aligned = np.asarray(aligned, float)
    reference = np.asarray(reference, float)
    valid = np.asarray(valid, bool)
    s = measure_misregistration(aligned, reference, valid, window=window, step=step, min_ncc=min_ncc)
    if confirm_px is None or not len(s):
        return s
    ny, nx = reference.shape
    big = 2 * window
    for i, (xc, yc, dx, dy) in enumerate(s):
        if np.hypot(dx, dy) <= confirm_px:
            continue
        x0 = int(round(xc + 0.5 - big / 2))
        y0 = int(round(yc + 0.5 - big / 2))
        x0, y0 = min(max(x0, 0), nx - big), min(max(y0, 0), ny - big)
        if x0 < 0 or y0 < 0:
            continue
        sl = (slice(y0, y0 + big), slice(x0, x0 + big))
        if not valid[sl].all():
            continue
        s[i, 2:] = window_shift(reference[sl], aligned[sl])
    return s


def summarize(s):
    """``n_windows, median_px, p95_px, rms_px, max_px, mean_dx, mean_dy`` of :func:`measure`'s output."""
    if len(s) == 0:
        return {"n_windows": 0, "median_px": None, "p95_px": None, "rms_px": None, "max_px": None,
                "mean_dx": None, "mean_dy": None}
    m = np.hypot(s[:, 2], s[:, 3])
    return {"n_windows": int(len(m)), "median_px": float(np.median(m)), "p95_px": float(np.percentile(m, 95)),
            "rms_px": float(np.sqrt(np.mean(m ** 2))), "max_px": float(m.max()),
            "mean_dx": float(s[:, 2].mean()), "mean_dy": float(s[:, 3].mean())}


def score(aligned, reference, valid, **kw):
    """:func:`measure` then :func:`summarize`."""
    return summarize(measure(aligned, reference, valid, **kw))


def classify(reported_success, summary, expected_windows=None, threshold_px=SILENT_P95_PX):
    """``(status, note)``: ``pass``, ``SILENT FAILURE`` (exit 0, wrong or unmeasurable image) or ``reported failure``.

    ``expected_windows``: how many windows a correct output would give; an output that
    correlates in fewer than half of them is wrong even if those few windows agree.
    """
    if not reported_success:
        return "reported failure", ""
    n = summary.get("n_windows", 0)
    if n == 0:
        return "SILENT FAILURE", "exit 0 but no window of the output matches the reference"
    if expected_windows and n < 0.5 * expected_windows:
        return "SILENT FAILURE", f"exit 0 but only {n} of ~{expected_windows} windows match the reference"
    if summary["p95_px"] > threshold_px:
        return "SILENT FAILURE", f"exit 0 but p95 residual {summary['p95_px']:.2f} px > {threshold_px:g} px"
    return "pass", ""


def erode(mask, px):
    """Shrink a validity mask by ``px`` pixels (interpolation support next to nodata)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if px <= 0:
        return mask
    return ndimage.binary_erosion(mask, structure=np.ones((2 * px + 1, 2 * px + 1), bool), border_value=0)


def to_fixed_grid(path, fixed_path, band=1, nodata=None):
    """Read band ``band`` of a GeoTIFF output and put it on ``fixed_path``'s grid.

    Returns ``(values float64, valid bool)``. When the output's grid is the fixed grid
    shifted by whole pixels (the usual case) the pixels are copied exactly; otherwise
    (e.g. AROSICS' shifted geotransform) the output is resampled with its own
    geotransform (cubic) onto the fixed grid.
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

    with rasterio.open(fixed_path) as fx:
        fshape, ftr, fcrs = (fx.height, fx.width), fx.transform, fx.crs
    with rasterio.open(path) as ds:
        data = ds.read(band).astype(float)
        nd = ds.nodata if nodata is None else nodata
        tr, crs = ds.transform, ds.crs
        valid = np.isfinite(data)
        if nd is not None and np.isfinite(nd):
            valid &= data != nd
    off = ~ftr @ (tr.c, tr.f)  # output's top-left corner in fixed pixels
    same_res = np.allclose([tr.a, tr.b, tr.d, tr.e], [ftr.a, ftr.b, ftr.d, ftr.e], rtol=0, atol=1e-9 * abs(ftr.a))
    if same_res and np.allclose(off, np.round(off), atol=1e-6):
        ox, oy = (int(round(v)) for v in off)
        out = np.zeros(fshape)
        ov = np.zeros(fshape, bool)
        ys, xs = max(oy, 0), max(ox, 0)
        ye, xe = min(oy + data.shape[0], fshape[0]), min(ox + data.shape[1], fshape[1])
        if ye > ys and xe > xs:
            out[ys:ye, xs:xe] = data[ys - oy:ye - oy, xs - ox:xe - ox]
            ov[ys:ye, xs:xe] = valid[ys - oy:ye - oy, xs - ox:xe - ox]
        return out, ov
    src = np.where(valid, data, np.nan)
    out = np.full(fshape, np.nan)
    reproject(src, out, src_transform=tr, src_crs=crs or fcrs, dst_transform=ftr, dst_crs=fcrs,
              src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.cubic)
    ov = np.isfinite(out)
    return np.nan_to_num(out), ov


def read_fits_image(path, shape=None, cval=None):
    """First image HDU of a FITS output as float64, and its validity (finite, != ``cval``)."""
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        data = next(h.data for h in hdul if h.data is not None and getattr(h.data, "ndim", 0) == 2)
        data = np.asarray(data, float)
    valid = np.isfinite(data)
    if cval is not None:
        valid &= data != cval
    if shape is not None and data.shape != tuple(shape):
        out = np.zeros(shape)
        ov = np.zeros(shape, bool)
        h, w = min(shape[0], data.shape[0]), min(shape[1], data.shape[1])
        out[:h, :w], ov[:h, :w] = data[:h, :w], valid[:h, :w]
        data, valid = out, ov
    return np.nan_to_num(data), valid
