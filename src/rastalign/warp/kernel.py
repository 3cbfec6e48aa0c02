"""The warp kernel: resample a block of the moving image onto a box of the output grid.

``warp_block`` is the single numpy entry point used both in memory
(:func:`warp_array`) and per chunk by the dask driver, so chunked output equals
in-memory output bit for bit: the model is evaluated on a *global* lattice of output
pixels, and every chunk reads the same lattice values.
"""
from __future__ import annotations

import math
import os

import numpy as np

from rastalign.errors import HaloError
from rastalign._kernels.methods import BSPLINE, METHODS, NEAREST, TAPS, support_radius
from rastalign.runtime.pools import split_rows

LATTICE_STEP = 16
_NATIVE = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16))  # source types the kernel reads as is


def lattice(model, out_box, step=LATTICE_STEP):
    """Residual-field values at the global lattice nodes covering ``out_box``.

    Returns ``(dx, dy, ix0, iy0)``: arrays of shape (nj, ni) for nodes
    ``(ix0 + i) * step, (iy0 + j) * step``; ``None`` arrays when the model is flat.
    """
    y0, y1, x0, x1 = out_box
    if model.field is None:
        return None, None, 0, 0
    ix0, iy0 = x0 // step, y0 // step
    ix1, iy1 = (x1 - 1) // step + 1, (y1 - 1) // step + 1
    gx, gy = np.meshgrid(np.arange(ix0, ix1 + 1) * float(step), np.arange(iy0, iy1 + 1) * float(step))
    dx, dy = model.field_at_output(gx, gy)
    return dx, dy, ix0, iy0


def moving_bounds(model, out_box, step=LATTICE_STEP):
    """Conservative ``(xmin, xmax, ymin, ymax)`` of the moving coordinates over ``out_box``."""
    y0, y1, x0, x1 = out_box
    cx = np.array([x0, x1 - 1, x0, x1 - 1], float)
    cy = np.array([y0, y0, y1 - 1, y1 - 1], float)
    lin = model.linear
    xs = lin[0, 0] * cx + lin[0, 1] * cy + lin[0, 2]
    ys = lin[1, 0] * cx + lin[1, 1] * cy + lin[1, 2]
    xmin, xmax, ymin, ymax = xs.min(), xs.max(), ys.min(), ys.max()
    dx, dy, _, _ = lattice(model, out_box, step)
    if dx is not None:
        xmin += dx.min(); xmax += dx.max(); ymin += dy.min(); ymax += dy.max()
    return xmin, xmax, ymin, ymax


def source_box(model, out_box, resampling, source_shape, extra=0):
    """The moving-image box ``(y0, y1, x0, x1)`` a chunk needs, or ``None`` if it needs nothing.

    Computed from the model (corners of the affine part plus the extremes of the
    residual lattice) and the interpolation support, plus ``extra`` pixels (for
    mask erosion); clipped to the source.
    """
    xmin, xmax, ymin, ymax = moving_bounds(model, out_box)
    r = support_radius(resampling) + 1 + int(extra)
    if not all(map(math.isfinite, (xmin, xmax, ymin, ymax))):
        return None
    sy0 = max(int(math.floor(ymin)) - r, 0)
    sy1 = min(int(math.floor(ymax)) + r + 1, source_shape[0])
    sx0 = max(int(math.floor(xmin)) - r, 0)
    sx1 = min(int(math.floor(xmax)) + r + 1, source_shape[1])
    if sy1 <= sy0 or sx1 <= sx0:
        return None
    return sy0, sy1, sx0, sx1


def warp_block(source, model, out_box, source_origin=(0, 0), source_shape=None, valid=None,
               resampling="cubic", threads=1, step=LATTICE_STEP):
    """Resample ``source`` (bands, rows, cols) onto the output box ``(y0, y1, x0, x1)``.

    ``source`` is the block of the moving image whose top-left pixel is
    ``source_origin = (row, col)`` of the full moving image of shape
    ``source_shape = (rows, cols)``; ``valid`` is its validity mask (True = usable).
    Returns ``(values, valid_out)``: float values (float64 for float64 sources, else
    float32) of shape (bands, box rows, box cols) and a boolean mask. Raises
    :class:`HaloError` if any needed pixel lies in the full source but outside the block.
    ``bspline`` first turns the block into prefiltered coefficients
    (:func:`rastalign._kernels.prefilter.coefficients`; non-finite pixels count as invalid).
    """
    from rastalign._kernels import resample as _compiled, prefilter  # the compiled kernels: loaded when a chunk is warped, not when it is planned

    src = np.asarray(source)
    if src.ndim == 2:
        src = src[None]
    ftype = np.float64 if src.dtype == np.float64 else np.float32
    method = METHODS[resampling]
    # 8- and 16-bit integers are read as they are (exact in float32, no converted copy of the block)
    native = src.dtype in _NATIVE and method != BSPLINE
    src = np.ascontiguousarray(src) if native else np.ascontiguousarray(src, dtype=ftype)
    if source_shape is None:
        source_shape = src.shape[1:]
    nrows = int(out_box[1]) - int(out_box[0])
    threads = max(1, min(int(threads or 1), max(nrows, 1)))
    if method == BSPLINE:
        if valid is not None and np.shape(valid) != src.shape[1:]:
            raise ValueError(f"mask shape {np.shape(valid)} differs from source block {src.shape[1:]}")
        src, valid, source_origin = prefilter.coefficients(src, valid, source_origin, source_shape, threads)
    y0, y1, x0, x1 = (int(v) for v in out_box)
    out = np.zeros((src.shape[0], y1 - y0, x1 - x0), ftype)
    out_valid = np.zeros((y1 - y0, x1 - x0), np.uint8)
    if valid is not None and np.all(valid):
        valid = None  # no per-tap mask checks where everything is valid
    check = valid is not None
    if check:  # a C-contiguous boolean mask is viewed, not copied
        valid = np.asarray(valid)
        vmask = valid.view(np.uint8) if valid.dtype == bool and valid.flags.c_contiguous else \
            np.ascontiguousarray(valid != 0, dtype=np.uint8)
    else:
        vmask = np.ones((1, 1), np.uint8)
    if check and vmask.shape != src.shape[1:]:
        raise ValueError(f"mask shape {vmask.shape} differs from source block {src.shape[1:]}")
    dx, dy, lix0, liy0 = lattice(model, (y0, y1, x0, x1), step)
    has_field = dx is not None
    if not has_field:
        dx = dy = np.zeros((1, 1))
    lin = np.ascontiguousarray(model.linear, dtype=np.float64)

    win = vmask
    if check and method != NEAREST:  # all-valid windows of the method's taps: one look-up per pixel
        win = np.empty_like(vmask)
        split_rows(lambda r0, r1: _compiled.window_valid(vmask, TAPS[method], r0, r1, win), win.shape[0], threads)

    def run(r0, r1):
        return _compiled.warp_rows(src, vmask, win, check, out, out_valid, lin, x0, y0, r0, r1,
                                int(source_origin[1]), int(source_origin[0]),
                                int(source_shape[1]), int(source_shape[0]),
                                dx, dy, has_field, step, lix0, liy0, method)

    nviol = sum(split_rows(run, nrows, threads))
    if nviol:
        raise HaloError(f"warp of output box {out_box} read {nviol} taps outside its source block "
                        f"{source_origin}+{src.shape[1:]}: the halo plan is wrong")
    return out, out_valid.view(bool)


def warp_array(source, model, output_shape=None, valid=None, resampling="cubic", threads=None):
    """Warp a whole in-memory array (bands, rows, cols) onto the model's output grid."""
    src = np.asarray(source)
    if output_shape is None:
        output_shape = model.output_shape or src.shape[-2:]
    threads = threads or os.cpu_count() or 1
    return warp_block(src, model, (0, output_shape[0], 0, output_shape[1]),
                      valid=valid, resampling=resampling, threads=threads)
