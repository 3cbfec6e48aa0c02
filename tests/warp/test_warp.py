import numpy as np
import pytest

from conftest import warp_chunked

from rastalign.errors import HaloError
from rastalign.model import AlignmentModel, fit_residual_field
from rastalign.warp.graph import to_output_dtype
from rastalign.warp.kernel import warp_array, warp_block
from rastalign.warp.plan import plan_warp


def distorted_model(shape):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, shape[1], (300, 2))
    r = np.column_stack([1.5 * np.sin(xy[:, 0] / 150.0), 1.2 * np.cos(xy[:, 1] / 170.0)])
    field, _ = fit_residual_field(xy, r, None, (0, 0, shape[1] - 1, shape[0] - 1), choice={"nodes": 5, "lambda": 0.01})
    th = np.deg2rad(0.7)
    aff = np.array([[np.cos(th), -np.sin(th), 6.3], [np.sin(th), np.cos(th), -4.2]])
    return AlignmentModel(aff, field, output_shape=shape)


@pytest.fixture(scope="module")
def source():
    rng = np.random.default_rng(5)
    data = rng.integers(0, 60000, (2, 300, 340)).astype(np.uint16)
    valid = np.ones(data.shape[1:], bool)
    valid[100:140, 50:90] = False
    return data, valid


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "lanczos"])
def test_identity_warp_returns_input(resampling, source):
    data, _ = source
    vals, ok = warp_array(data, AlignmentModel.identity(data.shape[1:]), resampling=resampling)
    assert ok.all()
    assert np.array_equal(vals.astype(np.uint16), data)


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "lanczos", "bspline"])
@pytest.mark.parametrize("chunking", [{"split_factor": k} for k in range(5)]
                         + [{"chunks": ((37, 100, 163), (1, 200, 139))}, {"chunks": (64, 100)}])
def test_chunked_equals_in_memory(resampling, chunking, source):
    data, valid = source
    shape = (300, 340)
    model = distorted_model(shape)
    vals, ok = warp_array(data, model, shape, valid=valid, resampling=resampling)
    expected = to_output_dtype(vals, ok, np.uint16, 0)
    out = warp_chunked(data, valid, model, shape, resampling, np.uint16, 0, **chunking)
    assert np.array_equal(out, expected)


def test_split_factor_layout():
    plan = plan_warp((1000, 1000), 1, split_factor=3)
    assert len(plan.col_edges) - 1 == 4 and len(plan.row_edges) - 1 == 2
    assert plan_warp((1000, 1000), 1, split_factor=0).n_chunks == 1


def test_halo_violation_is_loud(source):
    data, valid = source
    model = AlignmentModel(np.array([[1.0, 0, 10.5], [0, 1.0, 0.0]]))
    with pytest.raises(HaloError):
        # hand the kernel a block that is too small for the chunk
        warp_block(data[:, 0:50, 0:50], model, (0, 50, 0, 50), source_shape=data.shape[1:], resampling="cubic")


def test_invalid_pixels_spread_only_by_the_support():
    data = np.ones((1, 200, 200), np.float32) * 5
    data[0, 80:120, 80:120] = np.nan
    valid = np.isfinite(data[0])
    model = AlignmentModel(np.array([[1.0, 0, 0.3], [0, 1.0, 0.6]]))
    for resampling, r in (("bilinear", 1), ("cubic", 2), ("lanczos", 3), ("bspline", 2)):
        vals, ok = warp_array(data, model, (200, 200), valid=valid, resampling=resampling)
        bad = ~ok
        ys, xs = np.nonzero(bad[5:195, 5:195])
        ys, xs = ys + 5, xs + 5
        # the NaN block lies at moving 80..119 -> output 80-0.6-r .. 119-0.3+r
        assert ys.min() >= 80 - r - 1 and ys.max() <= 119 + r
        assert xs.min() >= 80 - r - 1 and xs.max() <= 119 + r
        assert np.allclose(vals[0][ok], 5.0, atol=1e-5)


def test_output_dtype_rounds_and_clips():

    v = np.array([[[0.49, 0.51, -3.0, 70000.0, 65535.2]]])
    ok = np.array([[True, True, True, False, True]])
    out = to_output_dtype(v, ok, np.uint16, 9)
    assert out.tolist() == [[[0, 1, 0, 9, 65535]]]
    # a valid value that lands on the nodata value (cubic overshoot clipped to 0) is kept valid
    out = to_output_dtype(v, ok, np.uint16, 0)
    assert out.tolist() == [[[1, 1, 1, 0, 65535]]]
    out = to_output_dtype(v, ok, np.uint16, 65535)
    assert out.tolist() == [[[0, 1, 0, 65535, 65534]]]
    f = to_output_dtype(np.array([[[0.0, 2.0]]]), np.array([[True, False]]), np.float32, 0.0)
    assert f[0, 0, 0] > 0 and f[0, 0, 1] == 0


# ----------------------------------------------------------------------------- bspline
def _gaussians(shape, n=120, sigma=1.3, seed=1):
    """A sum of Gaussians (sigma 1.3 px, band-limited to ~2e-4 at Nyquist) and its analytic evaluator."""
    rng = np.random.default_rng(seed)
    h, w = shape
    cx, cy = rng.uniform(-5, w + 5, n), rng.uniform(-5, h + 5, n)
    amp = rng.uniform(50, 1000, n)

    def at(x, y):
        v = np.full(np.shape(x), 100.0)
        for a, px, py in zip(amp, cx, cy):
            v += a * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma * sigma))
        return v

    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    return at(xx, yy), at


def _moving_coords(model, shape):
    gy, gx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    a = model.linear
    return a[0, 0] * gx + a[0, 1] * gy + a[0, 2], a[1, 0] * gx + a[1, 1] * gy + a[1, 2]


def test_bspline_matches_scipy_spline_and_beats_cubic():
    from scipy import ndimage

    shape = (150, 170)
    data, truth_at = _gaussians(shape)
    th = np.deg2rad(3.1)
    model = AlignmentModel(np.array([[1.02 * np.cos(th), -np.sin(th), 4.37], [np.sin(th), 0.99 * np.cos(th), -3.21]]),
                           output_shape=shape)
    x, y = _moving_coords(model, shape)
    scipy_ref = ndimage.map_coordinates(data, [y, x], order=3, mode="mirror")
    truth = truth_at(x, y)
    err = {}
    for dtype in (np.float64, np.float32):
        vals, ok = warp_array(data.astype(dtype)[None], model, shape, resampling="bspline", threads=2)
        cubic, ok_c = warp_array(data.astype(dtype)[None], model, shape, resampling="cubic", threads=2)
        assert np.array_equal(ok, ok_c)  # same 4x4 support, same validity rule
        inner = ok & (x > 3) & (y > 3) & (x < shape[1] - 4) & (y < shape[0] - 4)
        assert inner.sum() > 0.8 * ok.sum()
        assert np.abs(vals[0] - scipy_ref)[inner].max() < 1e-4 * data.max()
        assert np.abs(vals[0] - scipy_ref)[ok].max() < 1e-4 * data.max()  # mirror frame edges agree too
        err[dtype] = [float(np.sqrt(np.mean((v[0] - truth)[inner] ** 2))) for v in (vals, cubic)]
        # the prefiltered spline is much closer to the analytic image than Keys' cubic
        assert err[dtype][0] < 0.5 * err[dtype][1]


def test_bspline_identity_reproduces_the_samples():
    data, _ = _gaussians((80, 90))
    vals, ok = warp_array(data[None], AlignmentModel.identity(data.shape), resampling="bspline")
    # at integer positions taps -1..+1 carry weight: the outer ring has a tap outside the frame
    assert not ok[0].any() and not ok[:, -1].any() and ok[1:-1, 1:-1].all()
    assert np.abs(vals[0][ok] - data[ok]).max() < 1e-6 * data.max()  # FIR truncation only


def _bspline_source(kind):
    rng = np.random.default_rng(7)
    data = (rng.random((2, 300, 340)) * 1000).astype(np.float32)
    valid = np.ones(data.shape[1:], bool)
    if kind == "nan":  # NaN with a True mask: non-finite pixels count as invalid
        data[1, 100:140, 50:90] = np.nan
    elif kind == "mask":  # masked garbage must not poison the coefficients
        data[:, 100:140, 50:90] = 3e30
        valid[100:140, 50:90] = False
    return data, valid


@pytest.mark.parametrize("invalid", ["none", "nan", "mask"])
@pytest.mark.parametrize("field", [False, True])
def test_bspline_chunked_is_bit_identical(invalid, field):

    data, valid = _bspline_source(invalid)
    shape = (300, 340)
    if field:
        model = distorted_model(shape)
    else:
        model = AlignmentModel(np.array([[0.999, -0.012, 6.3], [0.012, 1.001, -4.2]]), output_shape=shape)
    vals, ok = warp_array(data, model, shape, valid=valid, resampling="bspline")
    assert ok.sum() > 0.8 * ok.size and np.isfinite(vals[:, ok]).all()
    if invalid != "none":
        assert (~ok[10:-10, 10:-10]).sum() >= 40 * 40
    expected = to_output_dtype(vals, ok, np.float32, np.nan)
    for chunking in ({"split_factor": 3}, {"chunks": ((37, 100, 163), (1, 200, 139))}, {"chunks": (64, 100)},
                     {"chunks": (300, 17)}):
        out = warp_chunked(data, valid, model, shape, "bspline", np.float32, np.nan, **chunking)
        assert np.array_equal(out, expected, equal_nan=True), chunking
    for block in ((0, 120, 0, 170), (97, 300, 151, 340)):  # also one warp_block on its planned source box
        from rastalign.warp.kernel import source_box

        sb = source_box(model, block, "bspline", shape)
        v, o = warp_block(data[:, sb[0]:sb[1], sb[2]:sb[3]], model, block, (sb[0], sb[2]), shape,
                          valid[sb[0]:sb[1], sb[2]:sb[3]], "bspline", threads=2)
        y0, y1, x0, x1 = block
        assert np.array_equal(o, ok[y0:y1, x0:x1]) and np.array_equal(v[:, o], vals[:, y0:y1, x0:x1][:, o])


def test_bspline_nan_spreads_only_by_the_support():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    n = 160
    base = ndimage.gaussian_filter(rng.normal(size=(n, n)), 2.0, mode="wrap")
    clean = (1000 + 200 * base / base.std()).astype(np.float32)[None]
    th = np.deg2rad(0.4)
    model = AlignmentModel(np.array([[np.cos(th), -np.sin(th), 0.3], [np.sin(th), np.cos(th), 0.6]]),
                           output_shape=(n, n))
    ref, ok_ref = warp_array(clean, model, resampling="bspline")
    nan = clean.copy()
    nan[0, 60:90, 70:95] = np.nan
    valid = np.isfinite(nan[0])
    vals, ok = warp_array(nan, model, valid=valid, resampling="bspline")
    _, ok_cubic = warp_array(nan, model, valid=valid, resampling="cubic")
    assert np.array_equal(ok, ok_cubic)  # invalid exactly where a 4x4 tap hits the block
    assert (ok_ref & ~ok).sum() > 30 * 25 and np.isfinite(vals[0][ok]).all()
    # whatever the masked pixels hold, the result is the same
    junk = clean.copy()
    junk[0, 60:90, 70:95] = -7e20
    vj, okj = warp_array(junk, model, valid=valid, resampling="bspline")
    assert np.array_equal(okj, ok) and np.array_equal(vj[0][ok], vals[0][ok])
    # distance of each output pixel's tap footprint from the block, in source pixels
    x, y = _moving_coords(model, (n, n))
    fx, fy = np.floor(x), np.floor(y)
    d = np.maximum(np.maximum(np.maximum(70 - (fx + 2), fx - 1 - 94), np.maximum(60 - (fy + 2), fy - 1 - 89)), 0)
    err = np.abs(vals[0] - ref[0])
    amp = float(clean.std())
    assert err[ok & (d == 1)].max() < 0.05 * amp  # next to the block: the fill's extrapolation error
    assert err[ok & (d >= 6)].max() < 1e-4 * amp  # decays like |sqrt(3) - 2| ** d
    far = ok & (d > 12)  # coefficients beyond the FIR length never see the block: bit-identical
    assert far.sum() > 0.5 * ok.sum() and np.array_equal(vals[0][far], ref[0][far])


def test_bspline_halo_check_covers_the_prefilter_margin():
    from rastalign.warp.kernel import source_box, support_radius
    from rastalign._kernels.prefilter import MARGIN

    assert support_radius("bspline") == support_radius("cubic") + MARGIN
    data, _ = _gaussians((200, 200))
    model = AlignmentModel(np.array([[1.0, 0, 10.5], [0, 1.0, 20.25]]))
    box = (40, 90, 50, 110)
    sb = source_box(model, box, "bspline", data.shape)
    # taps floor(y) - 1 .. floor(y) + 2 for y in 60.25..109.25 (x in 60.5..119.5), plus the coefficient margin
    need = (60 - 1 - MARGIN, 109 + 2 + MARGIN + 1, 60 - 1 - MARGIN, 119 + 2 + MARGIN + 1)
    assert sb[0] <= need[0] and sb[1] >= need[1] and sb[2] <= need[2] and sb[3] >= need[3]
    warp_block(data[sb[0]:sb[1], sb[2]:sb[3]], model, box, (sb[0], sb[2]), data.shape, resampling="bspline")
    # the cubic halo is enough for the taps but not for the coefficients they read
    cb = source_box(model, box, "cubic", data.shape)
    warp_block(data[cb[0]:cb[1], cb[2]:cb[3]], model, box, (cb[0], cb[2]), data.shape, resampling="cubic")
    with pytest.raises(HaloError):
        warp_block(data[cb[0]:cb[1], cb[2]:cb[3]], model, box, (cb[0], cb[2]), data.shape, resampling="bspline")
    # exactly the needed block works; one pixel short of the margin on any side is caught
    y0, y1, x0, x1 = need
    v, ok = warp_block(data[y0:y1, x0:x1], model, box, (y0, x0), data.shape, resampling="bspline")
    full, ok_full = warp_array(data[None], model, (200, 200), resampling="bspline")
    assert ok.all() and np.array_equal(v[0], full[0, 40:90, 50:110])
    for cut in ((y0 + 1, y1, x0, x1), (y0, y1 - 1, x0, x1), (y0, y1, x0 + 1, x1), (y0, y1, x0, x1 - 1)):
        with pytest.raises(HaloError):
            warp_block(data[cut[0]:cut[1], cut[2]:cut[3]], model, box, (cut[0], cut[2]), data.shape,
                       resampling="bspline")


def test_bspline_small_frames_any_chunking():
    """Frames narrower than the FIR (repeated mirror reflection) and ragged chunks down to 1 px:
    chunked == in-memory bit for bit, and equal to scipy's mirror-mode spline where all is valid."""
    from scipy import ndimage


    rng = np.random.default_rng(11)
    for it in range(40):
        ny, nx = (int(v) for v in rng.integers(1, 60, 2))
        src = rng.uniform(0, 1000, (2, ny, nx)).astype(np.float32)
        valid = np.ones((ny, nx), bool)
        if it % 2:
            valid[rng.integers(0, ny, 8), rng.integers(0, nx, 8)] = False
            src[0, rng.integers(0, ny, 4), rng.integers(0, nx, 4)] = np.nan
        th, s = np.deg2rad(rng.uniform(-3, 3)), 1 + rng.uniform(-0.03, 0.03)
        a = np.array([[s * np.cos(th), -s * np.sin(th), rng.uniform(-8, 8)],
                      [s * np.sin(th), s * np.cos(th), rng.uniform(-8, 8)]])
        model = AlignmentModel(a, output_shape=(ny, nx))
        ref, ok = warp_array(src, model, (ny, nx), valid=valid, resampling="bspline", threads=1 + it % 3)
        chunks = _ragged_chunks(rng, (ny, nx))
        out = warp_chunked(src, valid, model, (ny, nx), "bspline", np.float32, -1.0, scheduler="synchronous",
                           chunks=chunks)
        assert np.array_equal(out, to_output_dtype(ref, ok, np.float32, -1.0)), (ny, nx)
        if not it % 2 and ok.any():
            x, y = _moving_coords(model, (ny, nx))
            sc = ndimage.map_coordinates(src[1].astype(float), [y, x], order=3, mode="mirror")
            assert np.abs(ref[1] - sc)[ok].max() < 1e-3


# ----------------------------------------------------------------------------- fast kernel paths
def _ramp_model(n):
    th = np.deg2rad(0.7)
    c = (n - 1) / 2
    r = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return AlignmentModel(np.column_stack([r, np.array([c + 3.37, c - 2.61]) - r @ np.array([c, c])]),
                          output_shape=(n, n))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ramp_coordinates_are_exact(dtype):
    """Bilinear, Keys' cubic and the B-spline reproduce a ramp: each output pixel holds the x it was
    sampled at. float64: exact to rounding; float32: no worse than storing x in float32."""
    n = 1500
    model = _ramp_model(n)
    ramp = np.broadcast_to(np.arange(n, dtype=dtype), (n, n)).copy()
    gy, gx = np.mgrid[0:n:7, 0:n:7]
    ex, ey = model(gx.astype(float), gy.astype(float))
    inner = (ex > 16) & (ey > 16) & (ex < n - 17) & (ey < n - 17)
    for resampling in ("bilinear", "cubic", "bspline"):
        vals, ok = warp_array(ramp[None], model, (n, n), resampling=resampling, threads=2)
        assert ok[gy, gx][inner].all()
        err = np.abs(vals[0][gy, gx] - ex)[inner].max()
        limit = 1e-9 if dtype == np.float64 else 0.5 * np.spacing(np.float32(n)) + 1e-9
        assert err < min(limit, 1e-3), (resampling, err)


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "lanczos"])
def test_integer_sources_read_as_they_are(resampling, source):
    """8- and 16-bit sources go to the kernel unconverted: the same numbers as their float32 copy."""
    data, valid = source
    model = distorted_model((300, 340))
    ref, ok_ref = warp_array(data.astype(np.float32), model, (300, 340), valid=valid, resampling=resampling)
    for dtype in (np.uint16, np.int16, np.uint8):
        d = (data // 2).astype(dtype) if dtype == np.int16 else (data % 256 if dtype == np.uint8 else data)
        d = d.astype(dtype)
        vals, ok = warp_array(d, model, (300, 340), valid=valid, resampling=resampling)
        f32, ok32 = warp_array(d.astype(np.float32), model, (300, 340), valid=valid, resampling=resampling)
        assert vals.dtype == np.float32 and np.array_equal(ok, ok32) and np.array_equal(ok, ok_ref)
        assert np.array_equal(vals[:, ok], f32[:, ok])


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "lanczos"])
def test_small_frames_any_chunking(resampling):
    """Frames and chunks smaller than the taps, masks, a field: chunked == in-memory bit for bit
    (the fast path, the edges and the generic path agree wherever a pixel falls)."""
    rng = np.random.default_rng(23)
    for it in range(12):
        ny, nx = (int(v) for v in rng.integers(2, 50, 2))
        src = rng.uniform(0, 1000, (2, ny, nx)).astype(np.float32 if it % 3 else np.float64)
        valid = np.ones((ny, nx), bool)
        if it % 2:
            valid[rng.integers(0, ny, 6), rng.integers(0, nx, 6)] = False
        th, s = np.deg2rad(rng.uniform(-3, 3)), 1 + rng.uniform(-0.05, 0.05)
        a = np.array([[s * np.cos(th), -s * np.sin(th), rng.uniform(-4, 4)],
                      [s * np.sin(th), s * np.cos(th), rng.uniform(-4, 4)]])
        model = distorted_model((ny, nx)) if it % 4 == 3 else AlignmentModel(a, output_shape=(ny, nx))
        ref, ok = warp_array(src, model, (ny, nx), valid=valid, resampling=resampling, threads=1 + it % 2)
        chunks = _ragged_chunks(rng, (ny, nx))
        out = warp_chunked(src, valid, model, (ny, nx), resampling, np.float32, -1.0, scheduler="synchronous",
                           chunks=chunks)
        assert np.array_equal(out, to_output_dtype(ref, ok, np.float32, -1.0)), (it, ny, nx)


def test_invalid_outputs_are_zero():
    data = np.ones((1, 40, 40), np.float32)
    valid = np.ones((40, 40), bool)
    valid[10:20, 10:20] = False
    model = AlignmentModel(np.array([[1.0, 0, 5.3], [0, 1.0, -3.6]]))
    for resampling in ("nearest", "bilinear", "cubic", "lanczos", "bspline"):
        vals, ok = warp_array(data, model, (40, 40), valid=valid, resampling=resampling)
        assert (~ok).sum() > 100 and np.all(vals[:, ~ok] == 0)


def _ragged_chunks(rng, shape):
    """Random dask-style chunk sizes ``((rows...), (cols...))`` covering ``shape``."""
    chunks = []
    for n in shape:
        sizes, left = [], n
        while left:
            sizes.append(min(left, int(rng.integers(1, n // 2 + 2))))
            left -= sizes[-1]
        chunks.append(tuple(sizes))
    return tuple(chunks)


def test_compiled_output_conversion_matches_numpy():
    from rastalign._kernels.convert import to_output_dtype as compiled
    from rastalign.warp.graph import numpy_output_dtype

    rng = np.random.default_rng(0)
    v = rng.normal(0, 30000, (2, 60, 50)).astype(np.float32)
    v[0, 0, :6] = [0.49, 0.5, 1.5, 2.5, -0.5, 65535.5]
    ok = rng.random((60, 50)) > 0.2
    checked = 0
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.float32, np.float64, bool, np.int32):
        for nodata in (None, 0, 9, 255, -1, 65535, np.nan, 0.0, -9999.0, 0.5):
            for range_dtype in (None, np.uint8):
                for vv in (v, v.astype(np.float64), np.round(v)):
                    got = compiled(vv, ok, dtype, nodata, range_dtype)
                    if got is None:  # a case left to numpy
                        continue
                    want = numpy_output_dtype(vv, ok, dtype, nodata, range_dtype)
                    assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True), (dtype, nodata)
                    checked += 1
    assert checked > 150
