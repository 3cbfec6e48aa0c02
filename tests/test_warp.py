import numpy as np
import pytest

from rastalign.errors import HaloError
from rastalign.model import AlignmentModel, fit_residual_field
from rastalign.warp.dask import run_warp
from rastalign.warp.kernel import warp_array, warp_block
from rastalign.warp.plan import plan_warp


class ArrayReader:
    def __init__(self, data, valid):
        self.data, self.valid, self.n_bands = data, valid, data.shape[0]

    def __call__(self, box):
        y0, y1, x0, x1 = box
        return self.data[:, y0:y1, x0:x1], self.valid[y0:y1, x0:x1]


class ArraySink:
    def __init__(self, shape, count, dtype):
        self.out = np.zeros((count,) + tuple(shape), dtype)
        self.written = np.zeros(shape, int)

    def write(self, box, arr):
        y0, y1, x0, x1 = box
        self.out[:, y0:y1, x0:x1] = arr
        self.written[y0:y1, x0:x1] += 1


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


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "lanczos"])
@pytest.mark.parametrize("chunking", [{"split_factor": k} for k in range(5)]
                         + [{"chunks": ((37, 100, 163), (1, 200, 139))}, {"chunks": (64, 100)}])
def test_chunked_equals_in_memory(resampling, chunking, source):
    data, valid = source
    shape = (300, 340)
    model = distorted_model(shape)
    vals, ok = warp_array(data, model, shape, valid=valid, resampling=resampling)
    from rastalign.warp.dask import to_output_dtype
    expected = to_output_dtype(vals, ok, np.uint16, 0)
    plan = plan_warp(shape, 2, resampling, **chunking)
    sink = ArraySink(shape, 2, np.uint16)
    run_warp(ArrayReader(data, valid), data.shape[1:], model, plan, sink, np.uint16, 0, scheduler="threads")
    assert (sink.written == 1).all()
    assert np.array_equal(sink.out, expected)


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
    for resampling, r in (("bilinear", 1), ("cubic", 2), ("lanczos", 3)):
        vals, ok = warp_array(data, model, (200, 200), valid=valid, resampling=resampling)
        bad = ~ok
        ys, xs = np.nonzero(bad[5:195, 5:195])
        ys, xs = ys + 5, xs + 5
        # the NaN block lies at moving 80..119 -> output 80-0.6-r .. 119-0.3+r
        assert ys.min() >= 80 - r - 1 and ys.max() <= 119 + r
        assert xs.min() >= 80 - r - 1 and xs.max() <= 119 + r
        assert np.allclose(vals[0][ok], 5.0, atol=1e-5)


def test_output_dtype_rounds_and_clips():
    from rastalign.warp.dask import to_output_dtype

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
