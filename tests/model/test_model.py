import json

import numpy as np
import pytest

from rastalign import AlignmentModel, InputError, load_model, save_model
from rastalign.geometry.affine import robust_affine
from rastalign.model import fit_residual_field
from rastalign.model.residual import SplineField
from rastalign.geometry.affine import apply_affine, compose_affine, invert_affine


def test_robust_affine_recovers_truth_and_flags_outliers():
    rng = np.random.default_rng(1)
    m = np.array([[1.001, -0.004, 3.2], [0.004, 0.999, -7.1]])
    src = rng.uniform(0, 2000, (300, 2))
    dst = np.column_stack(apply_affine(m, src[:, 0], src[:, 1])) + rng.normal(0, 0.01, (300, 2))
    bad = rng.choice(300, 60, replace=False)
    dst[bad] += rng.uniform(5, 50, (60, 2))
    est, inl = robust_affine(src, dst, seed=0)
    gx, gy = np.meshgrid(np.linspace(0, 2000, 11), np.linspace(0, 2000, 11))
    err = np.hypot(*(np.array(apply_affine(est, gx, gy)) - np.array(apply_affine(m, gx, gy))))
    assert err.max() < 0.01
    assert not inl[bad].any()
    assert inl.sum() >= 230


def test_compose_and_invert():
    a = np.array([[0.9, 0.1, 5.0], [-0.2, 1.1, 2.0]])
    b = invert_affine(a)
    assert np.allclose(compose_affine(a, b), [[1, 0, 0], [0, 1, 0]])


def test_residual_field_stays_flat_on_noise():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 2048, (600, 2))
    resid = rng.normal(0, 0.05, (600, 2))
    field, info = fit_residual_field(xy, resid, None, (0, 0, 2047, 2047))
    assert field is None, info


def test_residual_field_recovers_smooth_distortion():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 2048, (600, 2))

    def dist(x, y):
        u, v = (x - 1024) / 1024, (y - 1024) / 1024
        return 2.0 * u * (u * u + v * v), 2.0 * v * (u * u + v * v)

    d = np.column_stack(dist(xy[:, 0], xy[:, 1]))
    field, info = fit_residual_field(xy, d + rng.normal(0, 0.01, d.shape), None, (0, 0, 2047, 2047))
    assert field is not None
    gx, gy = np.meshgrid(np.linspace(100, 1948, 20), np.linspace(100, 1948, 20))
    fx, fy = field(gx, gy)
    tx, ty = dist(gx, gy)
    assert np.hypot(fx - tx, fy - ty).max() < 0.05


def test_model_json_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    xy = rng.uniform(0, 1000, (400, 2))
    r = np.column_stack([np.sin(xy[:, 0] / 300), np.cos(xy[:, 1] / 300)])
    field, _ = fit_residual_field(xy, r, None, (0, 0, 999, 999))
    m = AlignmentModel(np.array([[1, 0.01, 2], [-0.01, 1, 3]]), field, np.array([[1, 0, 5.0], [0, 1, -4.0]]),
                       (900, 1000), (950, 1000), {"crs": "EPSG:32633"})
    path = tmp_path / "m.json"
    save_model(m, path)
    back = load_model(path)
    x, y = rng.uniform(0, 1000, (2, 50))
    assert np.array_equal(np.column_stack(m(x, y)), np.column_stack(back(x, y)))
    assert back.output_shape == (900, 1000) and back.meta["crs"] == "EPSG:32633"
    xi, yi = m.inverse_points(*m(x, y))
    assert np.abs(xi - x).max() < 1e-6 and np.abs(yi - y).max() < 1e-6


@pytest.mark.parametrize("text", ["{", "[]", json.dumps({"format": "other"}),
                                  json.dumps({"format": "rastalign-model", "version": 1, "affine": [1, 2]}),
                                  json.dumps({"format": "rastalign-model", "version": 1,
                                              "affine": [[1, 0, "nan"], [0, 1, 0]]})])
def test_malformed_model_json_is_refused(text):
    with pytest.raises(InputError, match="malformed model JSON"):
        AlignmentModel.from_json(text)


@pytest.mark.parametrize("pre", [np.eye(3)[:2], np.array([[0.5, 0.0, 12.0], [0.0, 0.5, -3.0]])])
@pytest.mark.parametrize("with_field", [True, False])
def test_a_grid_geometry_gives_the_model_at_its_pixels(pre, with_field):
    import pickle

    from rastalign._kernels.bspline import window_coords

    rng = np.random.default_rng(10)
    field = SplineField((0.0, 0.0), (80.0, 60.0), (6, 5), rng.normal(size=(7, 8)), rng.normal(size=(7, 8)))
    model = AlignmentModel(np.array([[1.001, 0.02, 3.5], [-0.02, 0.999, -1.25]]), field if with_field else None,
                           pre=pre)
    to_output = np.array([[4.0, 0.0, 1.5], [0.0, 4.0, 1.5]])  # a level of factor 4
    after = np.array([[0.5, 0.0, -0.25], [0.0, 0.5, -7.0]])  # to a level of factor 2 of a moving box
    geom = model.geometry((70, 90), to_output, after)
    corners = np.array([[0, 0], [33, 41], [90 - 25, 70 - 20]])
    lx, ly = window_coords(geom, corners, 20, 25)
    for k, (x0, y0) in enumerate(corners):
        gx, gy = np.meshgrid(4.0 * np.arange(x0, x0 + 25) + 1.5, 4.0 * np.arange(y0, y0 + 20) + 1.5)
        mx, my = model(gx, gy)
        np.testing.assert_allclose(lx[k], 0.5 * mx - 0.25, rtol=0, atol=1e-10)
        np.testing.assert_allclose(ly[k], 0.5 * my - 7.0, rtol=0, atol=1e-10)
    again = window_coords(pickle.loads(pickle.dumps(geom)), corners, 20, 25)
    assert all((a == b).all() for a, b in zip(again, (lx, ly)))
    with pytest.raises(ValueError, match="leaves the 70 x 90 grid"):
        window_coords(geom, [[80, 0]], 20, 25)
    with pytest.raises(ValueError, match="rotated"):
        model.geometry((70, 90), np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0]]))
