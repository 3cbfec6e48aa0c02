"""The warp's resampling methods and the source support each one reads.

Plain numbers, no compiled code: planning a warp (chunk boxes, source boxes) needs them, and is
done before any chunk runs, so building the lazy warp never loads the compiled kernels
(:mod:`rastalign._kernels.resample`, :mod:`rastalign._kernels.prefilter`); a task loads them when it runs.
"""
NEAREST, BILINEAR, CUBIC, LANCZOS, BSPLINE = 0, 1, 2, 3, 4
PENDING = 2  # out_valid value of a pixel left to the generic path
METHODS = {"nearest": NEAREST, "bilinear": BILINEAR, "cubic": CUBIC, "lanczos": LANCZOS, "bspline": BSPLINE}
RADIUS = {NEAREST: 1, BILINEAR: 1, CUBIC: 2, LANCZOS: 3, BSPLINE: 2}  # BSPLINE: taps on prefiltered coefficients
TAPS = {NEAREST: 1, BILINEAR: 2, CUBIC: 4, LANCZOS: 6, BSPLINE: 4}  # taps per axis (the window of window_valid)

# the B-spline prefilter (see rastalign._kernels.prefilter): FIR half-length, fill radius and passes
K = 12  # z1**13 = 3.7e-8: the truncated tail is below float32 precision
FILL_R = 3
FILL_PASSES = 4
MARGIN = K + FILL_R * FILL_PASSES  # source pixels a coefficient depends on


def support_radius(resampling: str) -> int:
    """Source pixels needed on each side of a sample: the interpolation support, plus for
    ``bspline`` the pixels its prefiltered coefficients depend on (:data:`MARGIN`)."""
    method = METHODS[resampling]
    return RADIUS[method] + (MARGIN if method == BSPLINE else 0)
