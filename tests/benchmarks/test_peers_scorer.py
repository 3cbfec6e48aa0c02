"""The peers benchmark's scorer (benchmarks/peers/scorer.py) on cases with a known answer; no peer needed."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rastalign.testing.pairs import scene

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scorer():
    spec = importlib.util.spec_from_file_location("peers_scorer", ROOT / "benchmarks" / "peers" / "scorer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


N = 384


def texture(dx=0.0, dy=0.0, n=N, seed=7):
    """The synthetic scene sampled at ``(x + dx, y + dy)``: the content moves by ``(-dx, -dy)``."""
    gy, gx = np.mgrid[0:n, 0:n].astype(float)
    return 1000.0 + 300.0 * scene(gx + dx, gy + dy, seed)


def test_identical_image_scores_zero(scorer):
    ref = texture()
    s = scorer.score(ref, ref, np.ones(ref.shape, bool), window=128)
    assert s["n_windows"] == 9
    assert s["median_px"] < 1e-3 and s["p95_px"] < 1e-3 and s["rms_px"] < 1e-3
    assert scorer.classify(True, s) == ("pass", "")


def test_known_subpixel_shift_is_measured(scorer):
    ref = texture()
    moved = texture(0.3, -0.2)
    s = scorer.score(moved, ref, np.ones(ref.shape, bool), window=128)
    assert s["n_windows"] == 9
    assert abs(s["median_px"] - np.hypot(0.3, -0.2)) < 0.01
    assert abs(s["rms_px"] - np.hypot(0.3, -0.2)) < 0.01
    assert abs(abs(s["mean_dx"]) - 0.3) < 0.01 and abs(abs(s["mean_dy"]) - 0.2) < 0.01
    assert np.sign(s["mean_dx"]) != np.sign(s["mean_dy"])


def test_a_wrong_image_with_exit_0_is_a_silent_failure(scorer):
    ref = texture()
    moved = texture(5.0, 0.0)  # a genuine 5 px error survives the re-measurement in a larger window
    s = scorer.score(moved, ref, np.ones(ref.shape, bool), window=64)
    assert abs(s["median_px"] - 5.0) < 0.05 and s["p95_px"] > 1.0
    status, note = scorer.classify(True, s)
    assert status == "SILENT FAILURE" and "p95" in note
    assert scorer.classify(False, scorer.summarize([]))[0] == "reported failure"
    assert scorer.classify(True, scorer.summarize([]))[0] == "SILENT FAILURE"
    assert scorer.classify(True, dict(s, n_windows=2, p95_px=0.1), expected_windows=9)[0] == "SILENT FAILURE"


def test_validity_mask_excludes_windows(scorer):
    ref = texture()
    valid = np.ones(ref.shape, bool)
    valid[:, :200] = False
    s = scorer.score(ref, ref, valid, window=128)
    assert s["n_windows"] == 3
    assert scorer.erode(valid, 3)[:, 203].any() and not scorer.erode(valid, 3)[:, 202].any()


def test_outputs_are_put_on_the_fixed_grid_with_their_own_geotransform(scorer, tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from affine import Affine

    ref = texture()
    gt = Affine(2.0, 0, 1000.0, 0, -2.0, 5000.0)

    def write(path, data, transform):
        with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                           dtype="float32", crs="EPSG:32633", transform=transform, nodata=-9999.0) as ds:
            ds.write(data.astype("float32"), 1)

    write(tmp_path / "fixed.tif", ref, gt)
    # a tool output on another grid, offset by whole pixels (a moving-grid output): copied exactly
    write(tmp_path / "crop.tif", ref[10:300, 20:330], gt @ Affine.translation(20, 10))
    img, valid = scorer.to_fixed_grid(tmp_path / "crop.tif", tmp_path / "fixed.tif")
    assert valid.sum() == 290 * 310 and valid[10, 20] and not valid[9, 20]
    np.testing.assert_allclose(img[valid], ref.astype("float32")[valid])
    # AROSICS-style: the pixels are untouched, only the geotransform moves by half a pixel in x;
    # the aligned content is then off by 0.5 px, and the scorer must see it
    write(tmp_path / "shifted.tif", ref, gt @ Affine.translation(0.5, 0))
    img, valid = scorer.to_fixed_grid(tmp_path / "shifted.tif", tmp_path / "fixed.tif")
    s = scorer.score(img, ref, scorer.erode(valid, 3), window=64)
    assert s["n_windows"] >= 9 and abs(s["median_px"] - 0.5) < 0.03
