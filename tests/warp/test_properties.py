"""Property tests (hypothesis): model JSON round trip, model then inverse = identity, identity warp
returns the input, and chunked warping equals in-memory warping for any chunking."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rastalign.model.model import AlignmentModel
from rastalign.model.residual import SplineField
from rastalign.warp.graph import to_output_dtype
from rastalign.warp.kernel import warp_array

from conftest import warp_chunked

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def affines(draw, max_rot=5.0, max_shift=50.0, max_scale=0.05, max_shear=0.02):
    rot = math.radians(draw(st.floats(-max_rot, max_rot)))
    s = 1.0 + draw(st.floats(-max_scale, max_scale))
    sh = draw(st.floats(-max_shear, max_shear))
    tx, ty = draw(st.floats(-max_shift, max_shift)), draw(st.floats(-max_shift, max_shift))
    c, n = math.cos(rot) * s, math.sin(rot) * s
    return np.array([[c, -n + sh, tx], [n, c, ty]])


@st.composite
def fields(draw, max_disp=3.0):
    nx, ny = draw(st.integers(2, 5)), draw(st.integers(2, 5))
    spacing = (draw(st.floats(20.0, 120.0)), draw(st.floats(20.0, 120.0)))
    origin = (draw(st.floats(-20.0, 20.0)), draw(st.floats(-20.0, 20.0)))
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    amp = draw(st.floats(0.0, max_disp))
    cx = rng.uniform(-amp, amp, (ny + 2, nx + 2))
    cy = rng.uniform(-amp, amp, (ny + 2, nx + 2))
    return SplineField(origin, spacing, (nx, ny), cx, cy)


@st.composite
def models(draw, with_field=None, **kw):
    aff = draw(affines(**kw))
    pre = draw(affines(max_rot=1.0, max_shift=10.0, max_scale=0.01, max_shear=0.0))
    fld = draw(st.one_of(st.none(), fields())) if with_field is None else (draw(fields()) if with_field else None)
    shape = (draw(st.integers(1, 5000)), draw(st.integers(1, 5000)))
    meta = draw(st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.booleans()),
                                max_size=3))
    return AlignmentModel(aff, fld, pre, shape, shape[::-1], meta)


@settings(max_examples=100, **SETTINGS)
@given(models())
def test_model_json_round_trip(model):
    text = model.to_json()
    back = AlignmentModel.from_json(text)
    np.testing.assert_array_equal(back.affine, model.affine)
    np.testing.assert_array_equal(back.pre, model.pre)
    assert back.output_shape == model.output_shape and back.moving_shape == model.moving_shape
    assert back.meta == model.meta
    assert (back.field is None) == (model.field is None)
    if model.field is not None:
        np.testing.assert_array_equal(back.field.coef_x, model.field.coef_x)
        np.testing.assert_array_equal(back.field.coef_y, model.field.coef_y)
    assert back.to_json() == text  # a fixed point: saving again gives the same bytes
    xs, ys = np.meshgrid(np.linspace(-5, 300, 7), np.linspace(-5, 200, 5))
    np.testing.assert_array_equal(np.array(back(xs, ys)), np.array(model(xs, ys)))


@settings(max_examples=100, **SETTINGS)
@given(models(max_rot=10.0, max_shift=200.0, max_scale=0.1), st.integers(0, 2 ** 16))
def test_model_then_inverse_is_identity(model, seed):
    """inverse_points(model(p)) == p within tolerance, for smooth fields of a few px."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-50, 600, 50), rng.uniform(-50, 600, 50)
    xm, ym = model(x, y)
    xi, yi = model.inverse_points(xm, ym, iterations=40)
    np.testing.assert_allclose(xi, x, atol=1e-3)
    np.testing.assert_allclose(yi, y, atol=1e-3)


@settings(max_examples=60, **SETTINGS)
@given(st.integers(1, 3), st.integers(1, 70), st.integers(1, 70),
       st.sampled_from(["nearest", "bilinear", "cubic", "lanczos"]), st.sampled_from(["uint8", "int16", "float32"]),
       st.integers(0, 2 ** 16))
def test_identity_warp_returns_the_input(bands, ny, nx, resampling, dtype, seed):
    rng = np.random.default_rng(seed)
    src = (rng.uniform(0, 200, (bands, ny, nx))).astype(dtype)
    model = AlignmentModel.identity((ny, nx))
    out, valid = warp_array(src, model, resampling=resampling, threads=1)
    assert valid.all()
    np.testing.assert_allclose(out, src.astype(out.dtype), rtol=0, atol=1e-4 * max(1.0, float(np.abs(src).max())))



@st.composite
def chunkings(draw, n):
    """Ragged chunk sizes adding up to ``n``."""
    sizes, left = [], n
    while left > 0:
        s = min(left, draw(st.integers(1, max(1, n // 2 + 1))))
        sizes.append(s)
        left -= s
    return tuple(sizes)


@settings(max_examples=60, **SETTINGS)
@given(st.data(), models(with_field=None, max_rot=3.0, max_shift=8.0, max_scale=0.03),
       st.sampled_from(["nearest", "bilinear", "cubic", "lanczos"]), st.integers(0, 2 ** 16),
       st.booleans())
def test_chunked_warp_equals_in_memory(data, model, resampling, seed, holes):
    rng = np.random.default_rng(seed)
    ny, nx = data.draw(st.integers(20, 90)), data.draw(st.integers(20, 90))
    src = rng.uniform(0, 1000, (2, ny, nx)).astype(np.float32)
    valid = np.ones((ny, nx), bool)
    if holes:
        valid[rng.integers(0, ny, 30), rng.integers(0, nx, 30)] = False
    model = AlignmentModel(model.affine, model.field, model.pre, (ny, nx), (ny, nx))
    ref, ref_valid = warp_array(src, model, (ny, nx), valid=valid, resampling=resampling, threads=1)
    expected = to_output_dtype(ref, ref_valid, np.float32, -1.0)
    chunks = (data.draw(chunkings(ny)), data.draw(chunkings(nx)))
    out = warp_chunked(src, valid, model, (ny, nx), resampling, np.float32, -1.0, scheduler="synchronous",
                       chunks=chunks)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("k", range(4))
def test_split_factor_chunk_invariance_threads(k):
    """The same through the threaded scheduler for the split factors of the CLI."""
    rng = np.random.default_rng(k)
    src = rng.uniform(0, 1000, (1, 97, 131)).astype(np.float32)
    model = AlignmentModel(np.array([[0.999, -0.02, 3.3], [0.02, 0.999, -2.1]]), None, output_shape=(97, 131))
    ref, ok = warp_array(src, model, resampling="cubic", threads=1)
    out = warp_chunked(src, np.ones((97, 131), bool), model, (97, 131), "cubic", np.float32, 0.0, split_factor=k)
    np.testing.assert_array_equal(out, to_output_dtype(ref, ok, np.float32, 0.0))
