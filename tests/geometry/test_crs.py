"""Different resolutions and projections: UTM 0.5 m vs Web Mercator 2 m, a 20x pixel-size
ratio, user-given output grids, and averaging when downsampling."""
import json

import numpy as np
import pytest
from pyproj import Transformer

import rastalign
from rastalign.cli.vhr import main
from rastalign.geometry.grids import Grid, pixel_mapping
from rastalign.io.raster import inspect_raster
from rastalign.testing.pairs import Truth, write_grid_pair

from conftest import read_tif

N = 1280
UTM = (0.5, 0.0, 400000.0, 0.0, -0.5, 5800000.0)


def mercator_grid(res, margin=60.0):
    tr = Transformer.from_crs("EPSG:32633", "EPSG:3857", always_xy=True)
    xs, ys = tr.transform([UTM[2] - margin, UTM[2] + N * 0.5 + margin],
                          [UTM[5] + margin, UTM[5] - N * 0.5 - margin])
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    shape = (int((y1 - y0) / res) + 1, int((x1 - x0) / res) + 1)
    return shape, (res, 0.0, x0, 0.0, -res, y1), "EPSG:3857"


@pytest.fixture(scope="module")
def crs_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("crs")
    truth = Truth((N, N), 0.6, (7.3, -4.1))
    m, f, pull = write_grid_pair(d, truth, ((N, N), UTM, "EPSG:32633"), mercator_grid(2.0), seed=3)
    return d, m, f, pull


def test_utm_half_metre_onto_mercator_two_metres(crs_pair):
    d, m, f, pull = crs_pair
    est = rastalign.estimate(str(m), str(f))
    fix = inspect_raster(f)
    gy, gx = np.mgrid[20:fix.shape[0] - 20:5, 20:fix.shape[1] - 20:5].astype(float)
    mx, my = est.model(gx, gy)
    tx, ty = pull(gx, gy)
    inside = (tx > 8) & (ty > 8) & (tx < N - 8) & (ty < N - 8)
    ratio = est.info["resolutions"]["moving_px_per_fixed_px"]
    err_fixed_px = np.hypot(mx - tx, my - ty)[inside] / ratio
    assert err_fixed_px.max() <= 0.1
    assert np.percentile(err_fixed_px, 95) <= 0.02
    assert est.info["resolutions"]["fixed"] == 2.0 and est.info["resolutions"]["moving"] == 0.5
    assert est.quality["rms_residual_crs_units"] == pytest.approx(est.quality["rms_residual_px"] * 0.5)


def test_outputs_across_crs_and_like_grid(crs_pair, tmp_path, capsys):
    d, m, f, pull = crs_pair
    common = ["--moving-image", m, "--fixed-image", f, "--resampling", "bilinear"]
    outs = {}
    for name, extra in (("moving", []), ("fixed", ["--no-output-on-moving-grid", "--no-clip-fixed-to-moving"]),
                        ("like", ["--like", f, "--no-clip-fixed-to-moving"])):
        out = tmp_path / f"{name}.tif"
        code = main([str(a) for a in common + ["--output-image", out, "--report-out", tmp_path / f"{name}.json"]
                     + extra])
        err = capsys.readouterr().err
        assert code == 0, err
        outs[name] = out
    mov_out, prof, _ = read_tif(outs["moving"])
    assert prof["crs"].to_epsg() == 32633 and mov_out.shape[1:] == (N, N)
    rep = json.loads((tmp_path / "moving.json").read_text())
    assert rep["estimation"]["output_grid_fit_error_px"] < 0.01  # the cross-CRS re-basing is near exact
    a, pa, _ = read_tif(outs["fixed"])
    b, pb, _ = read_tif(outs["like"])
    assert pa["crs"] == pb["crs"] and pa["transform"] == pb["transform"]
    assert np.array_equal(a, b)  # a user grid equal to the fixed grid gives the fixed-grid output
    # downsampling 0.5 m -> ~1.2 m ground averages (prefilter) and matches the fixed image
    ref = read_tif(f)[0][0].astype(float)
    ok = (a[0] > 0) & (ref > 0)
    from rastalign.testing.pairs import measure_misregistration, summarize
    s = summarize(measure_misregistration(a[0].astype(float), ref, ok, window=96))
    assert s["n_windows"] >= 10 and s["p95_px"] <= 0.1
    assert json.loads((tmp_path / "fixed.json").read_text())["output"]["prefilter_box_px"] == 3



def test_accessor_across_crs_stays_in_the_moving_crs(crs_pair, tmp_path, capsys):
    """Across CRS the accessor's model is re-fitted onto the moving grid: its result carries the moving
    CRS and equals the CLI's; re-basing it onto the reference grid (another CRS) is refused, not guessed."""
    import rioxarray

    d, m, f, pull = crs_pair
    moving, reference = rioxarray.open_rasterio(m, chunks=512), rioxarray.open_rasterio(f, chunks=512)
    model = moving.coreg.estimate(reference)
    aligned = moving.coreg.apply(model, resampling="bilinear")
    assert aligned.rio.crs == moving.rio.crs and aligned.rio.transform() == moving.rio.transform()
    out = tmp_path / "cli.tif"
    assert main(["--moving-image", str(m), "--fixed-image", str(f), "--output-image", str(out),
                 "--resampling", "bilinear"]) == 0
    capsys.readouterr()
    assert np.array_equal(aligned.values, read_tif(out)[0])
    with pytest.raises(rastalign.InputError, match="reproject it first"):
        moving.coreg.apply(model, grid=reference)

def test_twenty_times_coarser_reference(tmp_path):
    truth = Truth((2000, 2000), 0.3, (4.3, -2.7))
    res = 10.0
    fshape = (100, 100)
    ft = (res, 0.0, UTM[2], 0.0, -res, UTM[5])
    m, f, pull = write_grid_pair(tmp_path, truth, ((2000, 2000), UTM, "EPSG:32633"), (fshape, ft, "EPSG:32633"),
                                 seed=5, supersample=8)
    res_ = rastalign.align_image_pair(str(m), str(f), str(tmp_path / "out.tif"), report_out=str(tmp_path / "r.json"))
    q = res_.quality
    assert q["passed"] and q["n_inliers"] >= 6
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["estimation"]["resolutions"]["moving_px_per_fixed_px"] == pytest.approx(20.0)
    est = rastalign.estimate(str(m), str(f))
    gy, gx = np.mgrid[5:95:4, 5:95:4].astype(float)
    mx, my = est.model(gx, gy)
    tx, ty = pull(gx, gy)
    err_fixed_px = np.hypot(mx - tx, my - ty) / 20.0
    assert np.percentile(err_fixed_px, 95) <= 0.1  # the report says how well: in solve px and metres
    assert q["rms_residual_solve_px"] < 0.1


def test_pixel_mapping_round_trip():
    a = Grid((100, 100), UTM, "EPSG:32633")
    b = Grid(*mercator_grid(2.0))
    x, y = np.array([0.0, 50.0, 99.0]), np.array([0.0, 25.0, 99.0])
    fx, fy = pixel_mapping(a, b)(x, y)
    bx, by = pixel_mapping(b, a)(fx, fy)
    assert np.allclose(bx, x, atol=1e-6) and np.allclose(by, y, atol=1e-6)


def test_overlap_box_keeps_coincident_edges_and_names_a_tiny_overlap(tmp_path):
    """Identical grids overlap in every pixel (the last row and column were dropped); a 1x1 raster on a
    fixed pixel overlaps by 1 x 1 (not "at all"), and says how many pixels it would need."""
    from rastalign.errors import OverlapError
    from rastalign.geometry.grids import overlap_box

    from conftest import write_tif

    fixed = inspect_raster(write_tif(tmp_path / "f.tif", np.ones((40, 50), np.uint16), transform=UTM))
    same = inspect_raster(write_tif(tmp_path / "s.tif", np.ones((40, 50), np.uint16), transform=UTM))
    assert overlap_box(same, fixed) == (0, 40, 0, 50)
    half = (0.5, 0.0, UTM[2] + 0.5 * 10.25, 0.0, -0.5, UTM[5] - 0.5 * 3.5)  # offset by (10.25, 3.5) px
    part = inspect_raster(write_tif(tmp_path / "p.tif", np.ones((20, 30), np.uint16), transform=half))
    assert overlap_box(part, fixed) == (3, 24, 10, 41)
    one = (0.5, 0.0, UTM[2] + 0.5 * 7, 0.0, -0.5, UTM[5] - 0.5 * 9)
    tiny = inspect_raster(write_tif(tmp_path / "t.tif", np.ones((1, 1), np.uint16), transform=one))
    with pytest.raises(OverlapError, match=r"overlap by only 1 x 1 fixed pixels"):
        overlap_box(tiny, fixed)


@pytest.mark.parametrize("extra", [[], ["--no-output-on-moving-grid"]])
def test_one_crs_is_refused_before_the_output_grid_is_built(tmp_path, extra, capsys):
    from conftest import write_tif

    data = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7) % 5000
    moving = write_tif(tmp_path / "m.tif", data, transform=UTM)
    fixed = write_tif(tmp_path / "f.tif", data, transform=UTM, crs=None)
    rc = main(["--moving-image", str(moving), "--fixed-image", str(fixed), "--output-image", str(tmp_path / "o.tif"),
               *extra])
    err = capsys.readouterr().err
    assert rc == 2 and "only one image has a CRS" in err and len(err.strip().splitlines()) == 1
