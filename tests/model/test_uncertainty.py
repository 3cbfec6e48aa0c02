"""The predicted model error is right about the truth on tie points with a known truth: calibrated for
white matching noise, growing where no tie point holds the model, and not fooled by a distortion the
model's form cannot follow (the robust fit rejects it, its neighbours agree)."""
import numpy as np
import pytest

from rastalign.geometry.affine import apply_affine
from rastalign.model.uncertainty import accuracy_failure, predicted_error, refit, summarise

AFFINE = np.array([[1.001, 0.004, 3.2], [-0.004, 0.999, -1.7]])
DOMAIN = (0.0, 0.0, 1023.0, 1023.0)


def _lattice(step=16):
    g = np.arange(0.0, 1024.0, step)
    gx, gy = np.meshgrid(g, g)
    return np.column_stack([gx.ravel(), gy.ravel()])


def _tie_points(n, sigma, seed, xmax=1023.0, truth=None):
    rng = np.random.default_rng(seed)
    p = np.column_stack([rng.uniform(0, xmax, n), rng.uniform(0, 1023, n)])
    truth = truth or (lambda x, y: apply_affine(AFFINE, x, y))
    q = np.column_stack(truth(p[:, 0], p[:, 1])) + rng.normal(0, sigma, (n, 2))
    return p, q, truth


def test_white_noise_is_calibrated():
    """Affine truth, 0.05 px matching noise, eight draws: the true error of the refitted affine over the image
    against the prediction. One draw's error is one sample of the model's error, so a single ratio may stray
    (never beyond 3x either way); over the draws they centre on 1."""
    ratios = []
    for seed in range(8):
        p, q, truth = _tie_points(150, 0.05, seed)
        at = _lattice()
        model = refit(p, q, np.ones(len(p)), DOMAIN)
        true = np.hypot(*(np.column_stack(model(at[:, 0], at[:, 1])) - np.column_stack(truth(at[:, 0], at[:, 1]))).T)
        pred, info = predicted_error(p, q, None, DOMAIN, None, at, seed=seed)
        ratios.append(np.percentile(true, 95) / np.percentile(pred, 95))
        assert info["held_out_rms_px"] > info["in_sample_rms_px"]  # held-out residuals carry the model's error
    ratios = np.array(ratios)
    assert ((ratios > 1 / 3) & (ratios < 3)).all(), ratios
    assert 0.6 <= np.exp(np.mean(np.log(ratios))) <= 1.6, ratios


def test_the_prediction_grows_where_no_tie_point_holds_the_model():
    """Tie points on the left half only: the right half's predicted error (extrapolation) is several times the
    left's, as the true error is."""
    p, q, truth = _tie_points(120, 0.05, 3, xmax=500.0)
    at = _lattice()
    model = refit(p, q, np.ones(len(p)), DOMAIN)
    true = np.hypot(*(np.column_stack(model(at[:, 0], at[:, 1])) - np.column_stack(truth(at[:, 0], at[:, 1]))).T)
    pred, _ = predicted_error(p, q, None, DOMAIN, None, at)
    left, right = at[:, 0] < 450, at[:, 0] > 800
    assert np.median(pred[right]) > 2 * np.median(pred[left])
    assert 0.5 <= np.percentile(true[right], 95) / np.percentile(pred[right], 95) <= 2.0


def test_a_distortion_the_form_cannot_follow_is_not_hidden():
    """A local bump of 0.6 px the affine cannot follow: the robust fit would reject its tie points as outliers
    (they are passed as 'others'), the fit to the inliers looks perfect; the prediction still sees the bump.
    Without the rejected neighbours' evidence it would be about the noise over sqrt(n), 30x too small."""
    def truth(x, y):
        bx = 0.6 * np.exp(-((np.asarray(x) - 700) ** 2 + (np.asarray(y) - 300) ** 2) / (2 * 80.0 ** 2))
        ax, ay = apply_affine(AFFINE, x, y)
        return ax + bx, ay
    p, q, _ = _tie_points(400, 0.02, 5, truth=truth)
    inlier = np.hypot(*(q - np.column_stack(apply_affine(AFFINE, p[:, 0], p[:, 1]))).T) < 0.08
    at = _lattice()
    model = refit(p[inlier], q[inlier], np.ones(inlier.sum()), DOMAIN)
    true = np.hypot(*(np.column_stack(model(at[:, 0], at[:, 1])) - np.column_stack(truth(at[:, 0], at[:, 1]))).T)
    pred, info = predicted_error(p[inlier], q[inlier], None, DOMAIN, None, at, (p, q, np.ones(len(p))))
    near = np.hypot(at[:, 0] - 700, at[:, 1] - 300) < 60
    assert np.median(pred[near]) > 0.5 * np.median(true[near]) and info["max_local_bias_px"] > 0.3
    assert np.percentile(true, 95) / np.percentile(pred, 95) <= 2.0
    far = np.hypot(at[:, 0] - 700, at[:, 1] - 300) > 400
    assert np.median(pred[far]) < 0.05  # the bias stays where its evidence is


def test_a_field_form_refits_and_its_spread_is_calibrated():
    """Radial distortion with the residual field's form fixed: the jackknife over refits of that form
    predicts the field's error within a factor of 2."""
    def truth(x, y):
        dx, dy = np.asarray(x) - 511.5, np.asarray(y) - 511.5
        k = 1.5 / 723.0 ** 3
        r2 = dx * dx + dy * dy
        ax, ay = apply_affine(AFFINE, x, y)
        return ax + k * dx * r2, ay + k * dy * r2
    p, q, _ = _tie_points(300, 0.05, 7, truth=truth)
    choice = {"nodes": 5, "lambda": 0.01}
    at = _lattice()
    model = refit(p, q, np.ones(len(p)), DOMAIN, choice)
    true = np.hypot(*(np.column_stack(model(at[:, 0], at[:, 1])) - np.column_stack(truth(at[:, 0], at[:, 1]))).T)
    pred, _ = predicted_error(p, q, None, DOMAIN, choice, at)
    assert 0.5 <= np.percentile(true, 95) / np.percentile(pred, 95) <= 2.0


def test_summary_map_and_gate():
    at = _lattice(64)
    err = np.where(at[:, 0] > 900, 0.5, 0.01)
    s = summarise(err, at, DOMAIN, pixel_size=0.5)
    assert s["p50"] == pytest.approx(0.01) and s["max"] == pytest.approx(0.5) and s["p50"] <= s["p90"] <= s["p95"]
    assert s["ce90_crs"] == pytest.approx(s["p90"] * 0.5)
    assert len(s["map"]) == 16 and all(len(r) == 16 for r in s["map"])
    assert s["map"][0][-1] == 0.5 and s["map"][0][0] == 0.01
    assert accuracy_failure(s, None) is None and accuracy_failure(s, 1.0) is None
    err_ = accuracy_failure(s, 0.1)
    assert "predicted model error p95" in str(err_) and "--max-error-px 0.1" in str(err_)
