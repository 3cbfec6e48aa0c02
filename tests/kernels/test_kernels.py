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


def test_lucas_kanade_recovers_a_known_shift():
    rng = np.random.default_rng(5)
    img = ndimage.gaussian_filter(rng.normal(0, 1, (80, 80)), 2.0)
    coef = ndimage.spline_filter(img, order=3, mode="mirror")
    gy, gx = np.mgrid[25:55, 25:55].astype(float)
    fixed = ndimage.map_coordinates(img, [gy + 0.3, gx - 0.45], order=3, mode="mirror")
    sx, sy, ncc, ok = bspline.lk_bspline3(fixed, np.ones(fixed.shape, bool), coef, np.ones(img.shape, bool), gx, gy,
                                          np.eye(2), 0.0, 0.0, 20, 1e-6)
    assert ok and ncc > 0.999
    assert abs(sx + 0.45) < 1e-3 and abs(sy - 0.3) < 1e-3


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
