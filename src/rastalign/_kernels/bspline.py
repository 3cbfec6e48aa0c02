"""Cubic B-spline coefficients and sampling (estimation windows), the moving coordinates of a grid
(:class:`Geometry`), the Lucas-Kanade matcher of many windows, and the residual field's evaluation; the loops
are compiled (:mod:`rastalign._kernels._bspline`, ``_field``, ``_prefilter``), with the one cubic B-spline basis
the warp uses too (``_weights.pxd``).

:func:`sample` is equivalent to ``scipy.ndimage.map_coordinates(coef, [y, x], order=3, prefilter=False,
mode="constant")`` but several times faster on the small windows the tie-point matcher samples thousands of
times; it also returns the validity of each sample from a mask (nearest pixel).
"""
import numpy as np

from rastalign._kernels import _bspline, _field, _prefilter


def _flat(a):
    return np.ascontiguousarray(a, np.float64).reshape(-1)


def _u8(mask):
    return np.ascontiguousarray(mask, dtype=bool).view(np.uint8)


def coefficients(img):
    """Cubic B-spline coefficients (float64) of the image ``img`` that interpolate it exactly, with mirror
    boundaries: ``scipy.ndimage.spline_filter(img, order=3, mode="mirror")`` up to rounding (2e-14 on unit
    noise), compiled and without the GIL."""
    c = np.array(img, np.float64, order="C")
    _prefilter.prefilter(c)
    return c


def sample(coef, mask, lx, ly):
    """``(values, ok)`` of the spline of ``coef`` at ``(lx, ly)`` (any shape) and the mask at the nearest pixel."""
    shape = np.shape(lx)
    out = np.empty(shape, np.float64)
    ok = np.empty(shape, np.bool_)
    _bspline.sample(np.ascontiguousarray(coef, np.float64), _u8(mask), _flat(lx), _flat(ly), out.reshape(-1),
                    ok.reshape(-1).view(np.uint8))
    return out, ok


Geometry = _bspline.Geometry


def window_coords(geometry, corners, h, w):
    """``(lx, ly)``, each (k, h, w): the moving coordinates (:class:`Geometry`) of the ``h`` x ``w`` boxes of
    the geometry's grid whose top-left pixels are ``corners`` (k, 2) ``(x, y)``."""
    corners = np.ascontiguousarray(np.reshape(corners, (-1, 2)), np.intp)
    lx, ly = np.empty((len(corners), h, w)), np.empty((len(corners), h, w))
    _bspline.window_coords(geometry, corners, int(h), int(w), lx, ly)
    return lx, ly


def footprint(geometry, valid, f):
    """``(inside, ok)`` over ``geometry``'s grid (:class:`Geometry`, coordinates in full-resolution moving px):
    whether each pixel's nearest pixel of a level of factor ``f`` of the moving image, whose validity is
    ``valid``, lies in that level, and whether it is also valid."""
    inside, ok = np.empty(geometry.shape, bool), np.empty(geometry.shape, bool)
    _bspline.footprint(geometry, _u8(valid), (f - 1) / 2.0, float(f), inside.view(np.uint8), ok.view(np.uint8))
    return inside, ok


def lk_windows(fixed, fvalid, coef, mask, geometry, corners, window, jac, shift, ncc, good, iterations, tol):
    """Iterated least-squares matching (shift + gain + offset) of many windows of one level in one call,
    without the GIL: the ``window`` x ``window`` windows of ``fixed`` (validity ``fvalid``) whose top-left
    pixels are ``corners`` (k, 2) ``(x, y)``, against the spline ``coef`` of the moving level (``mask``: where
    all its taps are valid), whose coordinates at zero shift are ``geometry``'s (:class:`Geometry`, a grid of
    ``fixed``'s shape, computed a window at a time); ``jac`` the 2 x 2 d(moving px) / d(fixed px). Windows
    whose ``good`` is false on entry are skipped. From ``shift`` (k, 2), writes the shifts with
    ``moving(T(p + s)) ~ fixed(p)``, ``ncc`` (k,) and ``good`` (k,) (contiguous arrays, updated in place)."""
    _bspline.lk_windows(np.ascontiguousarray(fixed, np.float32), _u8(fvalid), np.ascontiguousarray(coef, np.float64),
                        _u8(mask), geometry, np.ascontiguousarray(corners, np.intp), int(window),
                        np.ascontiguousarray(jac, np.float64), shift, ncc, good.view(np.uint8), int(iterations),
                        float(tol))


def eval_field(coef_x, coef_y, ox, oy, sx, sy, nx_nodes, ny_nodes, x, y, outx, outy):
    """Tensor cubic B-spline displacement field at points ``x, y`` into ``outx, outy`` (see
    :class:`rastalign.model.residual.SplineField`)."""
    fx, fy = outx.reshape(-1), outy.reshape(-1)  # views of C-contiguous outputs; else copied back below
    _field.eval_field(np.ascontiguousarray(coef_x, np.float64), np.ascontiguousarray(coef_y, np.float64),
                        float(ox), float(oy), float(sx), float(sy), int(nx_nodes), int(ny_nodes), _flat(x), _flat(y),
                        fx, fy)
    if not np.shares_memory(fx, outx):
        outx[...] = fx.reshape(outx.shape)
        outy[...] = fy.reshape(outy.shape)
