"""The vhr-align-image-pair command: JSON contract, metadata kept, and bad input refused cleanly."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import read_tif, write_tif
from rastalign.cli.vhr import main
from rastalign.testing.pairs import make_pair, write_pair


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    moving, fixed, truth = write_pair(d, (512, 640), rotation_deg=0.2, shift=(4.3, -2.2), bands=3, seed=11)
    import rasterio

    with rasterio.open(moving, "r+") as ds:
        for i, name in enumerate(("red", "green", "nir"), start=1):
            ds.set_band_description(i, name)
    return moving, fixed, truth


def test_cli_success_prints_json_and_keeps_metadata(pair, tmp_path, capsys):
    moving, fixed, _ = pair
    out = tmp_path / "out.tif"
    code, stdout, err = run_cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", out,
                                 "--report-out", tmp_path / "r.json", "--split-factor", "2"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["output_image_path"] == str(out)
    assert summary["temp_dir"] is None
    assert os.path.exists(summary["model_path"])
    for k in ("n_tie_points", "n_inliers", "rms_residual_px", "median_residual_px"):
        assert k in summary["quality"]
    data, prof, desc = read_tif(out)
    mdata, mprof, _ = read_tif(moving)
    assert data.shape == mdata.shape and data.dtype == mdata.dtype
    assert prof["crs"] == mprof["crs"] and prof["transform"] == mprof["transform"]
    assert prof["nodata"] == mprof["nodata"]
    assert desc == ("red", "green", "nir")
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["tiepoints"]) == summary["quality"]["n_tie_points"]
    assert not [p for p in os.listdir(tmp_path) if ".rastalign-tmp-" in p]


def test_cli_fixed_grid_and_cog(pair, tmp_path, capsys):
    moving, fixed, _ = pair
    out = tmp_path / "out.tif"
    code, stdout, err = run_cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", out,
                                 "--no-output-on-moving-grid", "--output-format", "COG", "--resampling", "bilinear",
                                 "--keep-temp-dir", "--temp-dir", tmp_path], capsys)
    assert code == 0, err
    s = json.loads(stdout)
    assert s["temp_dir"] and os.path.exists(os.path.join(s["temp_dir"], "tiepoints.csv"))
    import rasterio

    with rasterio.open(out) as ds:
        assert ds.overviews(1) or min(ds.shape) < 1024
        assert ds.profile["tiled"]


@pytest.mark.parametrize("moving_point, on_moving_grid", [(True, False), (False, False), (True, True)])
def test_area_or_point_follows_the_output_grid(pair, tmp_path, capsys, moving_point, on_moving_grid):
    """AREA_OR_POINT goes with the georeference (GDAL writes a PixelIsPoint tiepoint half a pixel on): the output
    takes the value of the raster whose grid it is on, so its raw tiepoint lies a whole number of pixels from that
    raster's, also for a reader that ignores PixelIsPoint. The moving image's value was copied onto the fixed grid
    with its other tags: a Landsat (Point) scene on a Sentinel-2 (Area) grid was half a pixel off in such a reader."""
    import shutil

    import rasterio

    moving, fixed, _ = pair
    paths = {}
    for role, path, point in (("moving", moving, moving_point), ("fixed", fixed, not moving_point)):
        paths[role] = tmp_path / f"{role}.tif"
        shutil.copy(path, paths[role])
        with rasterio.open(paths[role], "r+") as ds:
            ds.update_tags(AREA_OR_POINT="Point" if point else "Area")
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["--moving-image", paths["moving"], "--fixed-image", paths["fixed"], "--output-image", out,
                            "--output-on-moving-grid" if on_moving_grid else "--no-output-on-moving-grid"], capsys)
    assert code == 0, err
    with rasterio.Env(GTIFF_POINT_GEO_IGNORE=True):  # raw tiepoints, as a reader ignoring PixelIsPoint reads them
        with rasterio.open(out) as o, rasterio.open(paths["moving" if on_moving_grid else "fixed"]) as g:
            assert o.tags()["AREA_OR_POINT"] == g.tags()["AREA_OR_POINT"]
            cols = (o.transform.c - g.transform.c) / g.transform.a
            rows = (o.transform.f - g.transform.f) / g.transform.e
            assert abs(cols - round(cols)) < 1e-9 and abs(rows - round(rows)) < 1e-9, (cols, rows)


def _assert_refused(code, out, err, match, output):
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    assert not os.path.exists(output)
    assert not [p for p in os.listdir(os.path.dirname(output)) if ".rastalign-tmp-" in p]


def test_bad_inputs_are_refused_in_one_line(pair, tmp_path, capsys):
    moving, fixed, _ = pair
    out = str(tmp_path / "out.tif")
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"this is not a raster" * 10)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    p = make_pair((256, 256), seed=2)
    far = write_tif(tmp_path / "far.tif", p.fixed, transform=(0.5, 0, 900000.0, 0, -0.5, 5800000.0))
    other_crs = write_tif(tmp_path / "crs.tif", p.fixed, crs="EPSG:32634")
    no_crs = write_tif(tmp_path / "nocrs.tif", p.fixed, crs=None)
    const = write_tif(tmp_path / "const.tif", np.full((1, 512, 640), 7, np.uint16))
    mostly_nodata = np.zeros((1, 512, 640), np.uint16)
    mostly_nodata[0, :3, :3] = np.arange(9).reshape(3, 3) + 5
    sparse = write_tif(tmp_path / "sparse.tif", mostly_nodata, nodata=0)
    cases = [
        ([moving, tmp_path / "missing.tif"], "file not found"),
        ([moving, garbage], "not a readable raster"),
        ([moving, empty], "file is empty"),
        ([moving, far], "do not overlap"),
        ([moving, other_crs], "do not overlap"),  # reprojected, and then far apart
        ([moving, no_crs], "only one image has a CRS"),
        ([const, fixed], "constant"),
        ([sparse, fixed], "too little valid data"),
    ]
    for (m, f), match in cases:
        code, o, e = run_cli(["--moving-image", m, "--fixed-image", f, "--output-image", out], capsys)
        _assert_refused(code, o, e, match, out)
    code, o, e = run_cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", out,
                          "--band-index", "5"], capsys)
    _assert_refused(code, o, e, "out of range", out)
    code, o, e = run_cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", moving], capsys)
    assert code != 0 and "same file as an input" in e
    existing = tmp_path / "exists.tif"
    existing.write_bytes(b"keep me")
    code, o, e = run_cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", existing], capsys)
    assert code != 0 and "--overwrite" in e and existing.read_bytes() == b"keep me"
    code, o, e = run_cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image",
                          tmp_path / "nodir" / "o.tif"], capsys)
    assert code != 0 and "does not exist" in e


@pytest.mark.slow
def test_console_script_exit_status(pair, tmp_path):
    moving, fixed, _ = pair
    r = subprocess.run([sys.executable, "-m", "rastalign.cli.vhr", "--moving-image", str(moving), "--fixed-image",
                        str(tmp_path / "nope.tif"), "--output-image", str(tmp_path / "o.tif")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().startswith("vhr-align-image-pair: error: file not found")


def test_fits_output_equals_geotiff_output(pair, tmp_path, capsys):
    from astropy.io import fits

    moving, fixed, _ = pair
    tif, fit = tmp_path / "o.tif", tmp_path / "o.fits"
    for out, extra in ((tif, ["--split-factor", "1"]), (fit, ["--split-factor", "3"])):
        code, _, err = run_cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", out] + extra,
                               capsys)
        assert code == 0, err
    data = fits.getdata(fit)
    ref = read_tif(tif)[0]
    assert data.shape == ref.shape
    assert np.array_equal(data, ref)  # uint16 widened losslessly to int32, same rounding and clipping


@pytest.mark.slow
def test_every_option_is_documented_with_its_default_once_and_mistakes_are_one_line(tmp_path):
    import subprocess
    import sys

    from rastalign.cli import demo, fits, vhr

    parsers = [vhr.build_parser(), fits.build_parser(), fits.build_simple_parser(), demo.build_parser()]
    parsers += [a.choices[c] for a in demo.build_parser()._actions if a.choices and hasattr(a, "add_parser")
                for c in a.choices]
    for p in parsers:
        text = p.format_help()
        for action in p._actions:
            if action.option_strings and action.option_strings[0] not in ("-h", "--version"):
                assert action.help, (p.prog, action.option_strings)
        assert "(default: None)" not in text and text.count("(default: ") < 60, p.prog
        for line in text.split("\n  -"):
            assert line.lower().count("default") <= 1, (p.prog, line)
    for cmd in (["rastalign.cli.vhr", "--moving-image", "a.tif", "--fixed-image", "b.tif", "--output-image", "c.tif",
                 "--resampling", "foo"],
                ["rastalign.cli.vhr", "--moving-image", "a.tif", "--fixed-image", "b.tif", "--output-image", "c.tif",
                 "--solve-resolutions", "abc"],
                ["rastalign.cli.demo", "apply", "--model", "m.json", "--moving-image", "a.tif", "--output-image", "c.tif",
                 "--resampling", "foo"]):
        r = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "error:" in r.stderr and "usage" not in r.stderr
    r = subprocess.run([sys.executable, "-c", "from rastalign.cli.fits import main; main(['--version'])"],
                       capture_output=True, text=True)
    assert "align-fits (rastalign)" in r.stdout


@pytest.mark.slow
def test_demo_without_a_folder_leaves_nothing_behind(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "rastalign.cli.demo", "demo"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["demo"]["model_error_vs_truth_px"]["max"] < 0.1 and s["quality"]["passed"]
    assert s["demo"]["kept"] is False and "removed" in r.stderr
    assert list(tmp_path.iterdir()) == []
    assert s["output_image_path"] is None and s["model_path"] is None  # no path to a file that is gone
    # the truth is stated in the correction's own convention, and the estimate matches it
    np.testing.assert_allclose(s["correction"]["shift_px"], s["demo"]["truth"]["correction_shift_px"], atol=0.02)


def test_a_float_image_with_nan_voids_keeps_them_apart_from_its_zeros(tmp_path, capsys):
    """No nodata tag on a float32 moving image with NaN voids and real zeros: the output's voids are NaN
    (its nodata), and a zero stays a valid zero, even when the fixed image's nodata is 0."""
    p = make_pair((384, 384), shift=(2.5, -1.5), seed=5, dtype="float32")
    moving = p.moving.copy()
    moving[0, 150:200, 160:230] = np.nan  # a void
    moving[0, 40:80, 40:80] = 0.0  # real zeros (e.g. water)
    m = write_tif(tmp_path / "m.tif", moving)
    f = write_tif(tmp_path / "f.tif", p.fixed, nodata=0)
    out = tmp_path / "o.tif"
    code, stdout, err = run_cli(["--moving-image", m, "--fixed-image", f, "--output-image", out], capsys)
    assert code == 0, err
    data, profile, _ = read_tif(out)
    assert np.isnan(profile["nodata"])
    assert np.isnan(data[0, 160:190, 175:215]).all()  # inside the void, shifted by under 3 px
    assert (data[0, 45:75, 45:75] == 0.0).all()  # the zeros are data
    assert np.isfinite(data[0, 100:140, 250:300]).all()


def test_apply_like_the_fixed_image_rebases_the_model_onto_its_grid(tmp_path, capsys):
    """A fixed-grid model is saved on the fixed grid clipped to the moving footprint; ``apply --like FIXED``
    (the help's own example) writes the whole fixed grid, pixel for pixel what the pair command wrote over
    the clipped box. A model applied to another image, and a FITS frame, are refused in one line."""
    import rasterio
    from affine import Affine

    from rastalign.cli.demo import main as rastalign_main

    p = make_pair((400, 480), rotation_deg=0.15, shift=(3.5, -2.25), seed=9)
    t = (0.5, 0, 500000.0, 0, -0.5, 5800000.0)
    f = write_tif(tmp_path / "f.tif", p.fixed, transform=t)
    # the moving image covers rows 40: and columns 60: of the fixed image only
    mt = tuple(Affine(*t) * Affine.translation(60, 40))[:6]
    m = write_tif(tmp_path / "m.tif", p.moving[:, 40:, 60:], transform=mt)
    out = tmp_path / "pair.tif"
    code, stdout, err = run_cli(["--moving-image", m, "--fixed-image", f, "--output-image", out,
                                 "--no-output-on-moving-grid"], capsys)
    assert code == 0, err
    model = f"{out}.model.json"
    with rasterio.open(out) as a:
        clipped, box = a.read(), rasterio.windows.from_bounds(*a.bounds, transform=Affine(*t))
    assert clipped.shape[1:] != (400, 480)  # the model's own grid is the clipped one
    assert rastalign_main(["apply", "--model", model, "--moving-image", str(m), "--like", str(f),
                           "--output-image", str(tmp_path / "like.tif")]) == 0, capsys.readouterr().err
    with rasterio.open(tmp_path / "like.tif") as b:
        assert b.shape == (400, 480) and tuple(b.transform)[:6] == t
        whole = b.read()
    r0, c0 = int(round(box.row_off)), int(round(box.col_off))
    assert np.array_equal(whole[:, r0:r0 + clipped.shape[1], c0:c0 + clipped.shape[2]], clipped)
    capsys.readouterr()
    other = write_tif(tmp_path / "other.tif", p.moving[:, :300, :300], transform=mt)
    assert rastalign_main(["apply", "--model", model, "--moving-image", str(other), "--output-image",
                           str(tmp_path / "x.tif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "estimated for a moving image of shape (360, 420)" in err
    fits_path = tmp_path / "frame.fits"
    from astropy.io import fits

    fits.PrimaryHDU(np.zeros((32, 32), np.float32)).writeto(fits_path)
    assert rastalign_main(["apply", "--model", model, "--moving-image", str(fits_path), "--output-image",
                           str(tmp_path / "y.tif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FITS" in err and "align-fits" in err
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.tif").exists()
