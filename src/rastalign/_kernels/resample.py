"""The compiled inner loop of the warp (Cython, :mod:`rastalign._kernels._warp`; the GIL released, so threads
run it in parallel).

Coordinates: output pixel ``(gx, gy)`` (global, integer) -> moving pixel
``lin @ (gx, gy, 1) + field``, where the residual field is bilinearly interpolated from
a lattice of exact model values every ``step`` output pixels (global lattice, so every
chunking sees the same numbers). Taps with a non-zero weight must be valid and inside
the source; otherwise the output pixel is invalid. A tap inside the full source but
outside the block handed to the kernel is a *halo violation* and is counted.
``BSPLINE`` reads a block of prefiltered coefficients (:mod:`rastalign._kernels.prefilter`),
not of pixels, with the 4-tap cubic B-spline basis.

A row is done in passes: its coordinates (:func:`row_coords`: the affine part as one
multiply-add per pixel from per-row constants, the field from two lattice rows
interpolated along the row once per ``step`` rows; every value depends only on the
global pixel, never on the chunk); then one vectorised pass computing each pixel's tap index, weights and whether its whole support
lies inside the block (with a mask: and is valid, one look-up in the window mask of
:func:`window_valid`), and one branch-free pass of fixed-tap sums. The other pixels
(frame and block edges, invalid neighbourhoods, non-finite coordinates) are marked and
done last by a generic path, which computes the same sum in the same order (with the
value of a zero-weight tap taken as 0: adding ``0 * v`` changes nothing), so every
chunking gives bit-identical results. Sums are float64 whatever the source type: in
float32, Keys' cubic on a float32 ramp 4000 px wide was off by up to 0.0011 px (9 ulp).
"""
import numpy as np

from rastalign._kernels import _warp
from rastalign._kernels._warp import window_valid

__all__ = ["window_valid", "warp_rows"]


def warp_rows(src, valid, win, check_valid, out, out_valid, lin, ox0, oy0, row0, row1,
              sx0, sy0, full_w, full_h, lat_dx, lat_dy, has_field, step, lat_ix0, lat_iy0, method):
    """Fill output rows ``row0:row1`` of ``out`` (bands, rows, cols; float32 or float64) and ``out_valid``
    (uint8); returns the number of halo violations. ``src`` (bands, rows, cols: uint8, uint16, int16,
    float32 or float64), ``valid`` and ``win`` (uint8, :func:`window_valid` of ``valid`` for the method's
    taps, read when ``check_valid``) C-contiguous."""
    return _warp.warp_rows(src, valid, win, bool(check_valid), out, out_valid,
                           np.ascontiguousarray(lin, np.float64), ox0, oy0, row0, row1, sx0, sy0, full_w, full_h,
                           np.ascontiguousarray(lat_dx, np.float64), np.ascontiguousarray(lat_dy, np.float64),
                           bool(has_field), step, lat_ix0, lat_iy0, method)
