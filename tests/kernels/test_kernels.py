"""The compiled kernels against plain numpy/scipy references, their GIL release, and no JIT at run time."""
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from scipy import ndimage

from rastalign._kernels import blocks, bspline
from rastalign.model.model import AlignmentModel
from rastalign.model.residual import SplineField
from rastalign.warp.kernel import warp_array


def _keys(t):
    """Keys' cubic (a = -0.5) at offsets -1, 0, 1, 2: the textbook piecewise form, not the kernel's Horner form."""
    def k(d):
        d = np.abs(d)
        return np.where(d <= 1, 1.5 * d ** 3 - 2.5 * d ** 2 + 1,
                        np.where(d < 2, -0.5 * d ** 3 + 2.5 * d ** 2 - 4 * d + 2, 0.0))
    return np.stack([k(t + 1), k(t), k(1 - t), k(2 - t)])


def _reference(src, a, shape, method):
    """Pull-map warp of ``src`` by the affine ``a`` in numpy (interior pixels only: NaN elsewhere)."""
    gy, gx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    x, y = a[0, 0] * gx + (a[0, 1] * gy + a[0, 2]), a[1, 0] * gx + (a[1, 1] * gy + a[1, 2])  # the kernel's order
    x0, y0 = np.floor(x), np.floor(y)
    tx, ty = x - x0, y - y0
    if method == "bilinear":
        wx, wy, first = np.stack([1 - tx, tx]), np.stack([1 - ty, ty]), 0
    else:
        wx, wy, first = _keys(tx), _keys(ty), -1
    n = wx.shape[0]
    out = np.zeros(shape)
    inside = (x0 + first >= 0) & (y0 + first >= 0) & (x0 + first + n <= src.shape[1]) & \
        (y0 + first + n <= src.shape[0])
    ix = np.where(inside, x0, 0).astype(int) + first
    iy = np.where(inside, y0, 0).astype(int) + first
    for jj in range(n):
        for ii in range(n):
            out += wy[jj] * wx[ii] * src[np.clip(iy + jj, 0, src.shape[0] - 1), np.clip(ix + ii, 0, src.shape[1] - 1)]
    return np.where(inside, out, np.nan)


@pytest.mark.parametrize("method", ["bilinear", "cubic"])
def test_warp_matches_a_numpy_reference(method):
    rng = np.random.default_rng(3)
    src = rng.normal(0, 100, (90, 110))
    a = np.array([[0.98, 0.05, 4.3], [-0.04, 1.02, -2.2]])
    vals, ok = warp_array(src[None], AlignmentModel(a), (80, 100), resampling=method, threads=2)
    ref = _reference(src, a, (80, 100), method)
    both = ok & np.isfinite(ref)
    assert both.sum() > 6000 and not (np.isfinite(ref) & ~ok).any()  # (ok also where only zero-weight taps fall out)
    np.testing.assert_allclose(vals[0][both], ref[both], rtol=1e-12, atol=1e-9)


def test_spline_sampling_matches_scipy_inside():
    rng = np.random.default_rng(4)
    coef = rng.normal(0, 1, (40, 50))
    x, y = rng.uniform(1.0, 47.9, 500), rng.uniform(1.0, 37.9, 500)  # every tap inside: no boundary rule
    vals, ok = bspline.sample(coef, np.ones(coef.shape, bool), x, y)
    ref = ndimage.map_coordinates(coef, [y, x], order=3, prefilter=False)
    np.testing.assert_allclose(vals, ref, rtol=1e-12, atol=1e-12)
    assert ok.all()
    vals, ok = bspline.sample(coef, np.ones(coef.shape, bool), np.array([np.nan, -3.0, 60.0]), np.array([2.0] * 3))
    assert not ok.any() and vals[0] == 0.0


def test_lucas_kanade_recovers_known_shifts_window_by_window():
    rng = np.random.default_rng(5)
    img = ndimage.gaussian_filter(rng.normal(0, 1, (120, 120)), 2.0)
    coef = ndimage.spline_filter(img, order=3, mode="mirror")
    gy, gx = np.mgrid[0:120, 0:120].astype(float)
    # the moving image at p + 0.3 y - 0.45 x on the left half, at p - 0.2 x + 0.6 y on the right: each window
    # sees its own shift
    right = gx >= 60
    fixed = ndimage.map_coordinates(img, [gy + np.where(right, -0.6, 0.3), gx + np.where(right, 0.2, -0.45)],
                                    order=3, mode="mirror").astype(np.float32)
    fixed[90:, :30] = 1.0  # a flat window: nothing to match
    corners = np.array([[15, 20], [75, 20], [75, 50], [0, 90], [15, 50]], np.intp)
    shift, ncc, good = np.zeros((5, 2)), np.zeros(5), np.array([True, True, True, True, False])
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    bspline.lk_windows(fixed, np.ones(fixed.shape, bool), coef, np.ones(img.shape, bool),
                       bspline.Geometry(identity, fixed.shape), corners, 30, np.eye(2), shift, ncc, good, 20, 1e-6)
    assert good.tolist() == [True, True, True, False, False]  # the flat one fails, the last was not asked for
    np.testing.assert_allclose(shift[:3], [[-0.45, 0.3], [0.2, -0.6], [0.2, -0.6]], atol=1e-3)
    assert (ncc[:3] > 0.999).all() and ncc[3] == 0.0 and ncc[4] == 0.0
    one = np.zeros((1, 2))  # a window alone, from its corner, gives the same shift bit for bit
    at = bspline.Geometry([[1.0, 0.0, 75.0], [0.0, 1.0, 50.0]], (30, 30))
    bspline.lk_windows(fixed[50:80, 75:105], np.ones((30, 30), bool), coef, np.ones(img.shape, bool), at,
                       np.zeros((1, 2), np.intp), 30, np.eye(2), one, np.zeros(1), np.ones(1, bool), 20, 1e-6)
    assert (one[0] == shift[2]).all()


def test_the_field_on_a_grid_is_the_field_at_its_points():
    rng = np.random.default_rng(7)
    field = SplineField((10.0, -5.0), (100.0, 80.0), (7, 6), rng.normal(size=(8, 9)), rng.normal(size=(8, 9)))
    # a grid's geometry whose affine is zero: its coordinates are the field, beyond the domain too (held at its edge)
    to_grid = np.array([[850 / 300, 0.0, -50.0], [0.0, 630 / 210, -30.0]])
    geom = AlignmentModel(np.zeros((2, 3)), field).geometry((211, 301), to_grid)
    dx, dy = (c[0] for c in bspline.window_coords(geom, [(0, 0)], 211, 301))
    ex, ey = field(*np.meshgrid(850 / 300 * np.arange(301) - 50.0, 630 / 210 * np.arange(211) - 30.0))
    np.testing.assert_allclose(dx, ex, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dy, ey, rtol=0, atol=1e-12)


def test_field_evaluation_matches_the_numpy_basis():
    rng = np.random.default_rng(6)
    field = SplineField((10.0, -5.0), (60.0, 45.0), (5, 4), rng.normal(0, 1, (6, 7)), rng.normal(0, 1, (6, 7)))
    x, y = rng.uniform(-50, 350, (20, 30)), rng.uniform(-50, 200, (20, 30))
    dx, dy = field(x, y)
    from rastalign.model.residual import _design  # the fit's own numpy basis, the reference

    a = _design(x.ravel(), y.ravel(), (field.origin, field.spacing, field.nodes))
    np.testing.assert_allclose(dx.ravel(), a @ field.coef_x.ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dy.ravel(), a @ field.coef_y.ravel(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, np.int64])
def test_block_mean_matches_numpy(dtype):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 200, (31, 29)).astype(dtype)
    valid = rng.random((31, 29)) > 0.3
    mean, ok = blocks.block_mean(data, valid, 4)
    pad = np.zeros((32, 32)), np.zeros((32, 32), bool), np.zeros((32, 32), bool)
    pad[0][:31, :29], pad[1][:31, :29], pad[2][:31, :29] = data, valid, True
    s = (pad[0] * pad[1]).reshape(8, 4, 8, 4).sum(axis=(1, 3))
    n = pad[1].reshape(8, 4, 8, 4).sum(axis=(1, 3))
    m = pad[2].reshape(8, 4, 8, 4).sum(axis=(1, 3))
    np.testing.assert_array_equal(ok, n >= 0.5 * m)
    np.testing.assert_allclose(mean, (s / np.maximum(n, 1)).astype(np.float32), rtol=1e-6)


def test_the_warp_releases_the_gil():
    """While one thread warps a large block, another keeps running Python: the longest pause it sees is a small
    part of the warp's time (with the GIL held it would be all of it)."""
    src = np.random.default_rng(8).random((1, 2048, 2048), dtype=np.float32)
    model = AlignmentModel(np.array([[1.0, 0.01, 0.3], [-0.01, 1.0, 0.2]]))
    warp_array(src, model, (256, 256), resampling="cubic", threads=1)  # warm-up
    stamps, done = [], threading.Event()
    t0 = time.perf_counter()

    def work():
        for _ in range(3):
            warp_array(src, model, (2048, 2048), resampling="lanczos", threads=1)
        done.set()

    th = threading.Thread(target=work)
    th.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
        time.sleep(0)
    th.join()
    total = time.perf_counter() - t0
    gaps = np.diff([t0] + stamps)
    assert total > 0.3 and gaps.max() < 0.5 * total, (total, gaps.max())


def test_no_jit_at_run_time():
    code = ("import sys, numpy as np\nfrom rastalign.warp.kernel import warp_array\nfrom rastalign.model.model import "
            "AlignmentModel\nwarp_array(np.ones((1, 50, 50)), AlignmentModel(np.eye(2, 3)), (40, 40))\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'llvmlite'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("shape", [(300, 257), (40, 3), (1, 9), (9, 1), (2, 2), (29, 30)])
def test_spline_coefficients_are_scipys_mirror_prefilter(shape):
    img = np.random.default_rng(8).normal(0, 1, shape)
    coef = bspline.coefficients(img)
    np.testing.assert_allclose(coef, ndimage.spline_filter(img, order=3, mode="mirror"), rtol=0, atol=1e-12)
    # and they interpolate: the spline through them passes through every pixel
    gy, gx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    vals = ndimage.map_coordinates(coef, [gy, gx], order=3, prefilter=False, mode="mirror")
    np.testing.assert_allclose(vals, img, rtol=0, atol=1e-10)


def test_edge_proxy_is_the_gradient_magnitude_away_from_invalid_pixels():
    from rastalign._kernels.pixels import edge_proxy, erode3

    rng = np.random.default_rng(11)
    img = rng.normal(0, 1, (60, 70)).astype(np.float32)
    valid = rng.random((60, 70)) > 0.05
    img[~valid] = np.nan  # never read
    want_near = ndimage.binary_erosion(valid, np.ones((3, 3)), border_value=0)
    assert np.array_equal(erode3(valid), want_near)
    e, near = edge_proxy(img, valid)
    assert np.array_equal(near, want_near) and e.dtype == np.float32
    x = np.where(valid, img, 0).astype(np.float64)
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    gx[:, 1:-1], gy[1:-1] = x[:, 2:] - x[:, :-2], x[2:] - x[:-2]
    np.testing.assert_allclose(e, np.where(want_near, np.hypot(gx, gy), 0), rtol=1e-6, atol=1e-6)
    assert (e[~near] == 0).all() and np.isfinite(e).all()


def test_nearest_points_are_the_closest_by_distance():
    from rastalign._kernels.neighbours import nearest

    rng = np.random.default_rng(12)
    p, at = rng.uniform(0, 100, (300, 2)), rng.uniform(-10, 110, (500, 2))
    idx = nearest(p, at, 9)
    d = np.hypot(*(at[:, None, :] - p[None, :, :]).transpose(2, 0, 1))
    np.testing.assert_array_equal(np.take_along_axis(d, idx, 1), np.sort(d, axis=1)[:, :9])  # nearest first
    grid = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # equally near: the first in p
    assert nearest(grid, [[0.5, 0.5]], 2).tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="k must be"):
        nearest(grid, [[0.5, 0.5]], 5)


def test_the_footprint_is_each_pixels_nearest_level_pixel():
    from rastalign._kernels.bspline import Geometry, footprint

    rng = np.random.default_rng(13)
    valid = rng.random((40, 50)) > 0.3
    a = np.array([[2.02, 0.03, -7.3], [-0.04, 1.98, 5.5]])  # grid px -> full-resolution moving px
    inside, ok = footprint(Geometry(a, (30, 35)), valid, 2)
    gy, gx = np.mgrid[0:30, 0:35].astype(float)
    lx = np.rint((a[0, 0] * gx + (a[0, 1] * gy + a[0, 2]) - 0.5) / 2)
    ly = np.rint((a[1, 0] * gx + (a[1, 1] * gy + a[1, 2]) - 0.5) / 2)
    want = (lx >= 0) & (ly >= 0) & (lx < 50) & (ly < 40)
    assert np.array_equal(inside, want) and 0 < want.mean() < 1
    assert np.array_equal(ok, want & valid[np.where(want, ly, 0).astype(int), np.where(want, lx, 0).astype(int)])
