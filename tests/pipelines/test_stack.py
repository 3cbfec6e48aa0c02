"""Stacks: many scenes (GeoTIFF) or frames (FITS) onto one reference, with a known truth per scene."""
import csv
import json
import os

import numpy as np
import pytest
import rasterio

import rastalign
from rastalign.cli.demo import main as rastalign_main
from rastalign.io.raster import read_window
from rastalign import load_model
from rastalign.pipelines.stack import output_names
from rastalign.testing.pairs import model_error, write_pair, write_stack
from rastalign.testing.stars import write_star_stack

SHAPE = (384, 384)
TRUTHS = [dict(shift=(2.6 * i - 9.0, 4.0 - 1.3 * i), rotation_deg=0.08 * (i - 4), scale=1.0 + 0.0005 * (i % 3))
          for i in range(8)]
FSHAPE = (512, 512)
FTRUTHS = [dict(shift=(3.1 * i - 11.0, 5.0 - 1.7 * i), rotation_deg=0.2 * (i - 4)) for i in range(8)]


def _bad_scenes(folder, shape, kind):
    """An unreadable file, an unrelated image and a scene outside the reference."""
    bad = folder / f"corrupt.{kind}"
    bad.write_bytes(b"this is not an image\n")
    if kind == "tif":
        unrelated, _, _ = write_pair(folder, shape, seed=99, names=("unrelated.tif", None))
        outside, _, _ = write_pair(folder, shape, shift=(1.0, 1.0), names=("outside.tif", None))
        with rasterio.open(outside, "r+") as ds:
            t = ds.transform
            ds.transform = rasterio.Affine(t.a, t.b, t.c + 50_000.0, t.d, t.e, t.f)
        return [str(bad), str(unrelated), str(outside)]
    _, others, _ = write_star_stack(folder / "other", [dict(), dict(shift=(3000.0, 0.0))], shape, 300, seed=5,
                                    prefix="other")
    return [str(bad), str(others[0]), str(others[1])]


@pytest.fixture(scope="module")
def vhr_stack(tmp_path_factory):
    d = tmp_path_factory.mktemp("vhr_stack")
    ref, moving, truths = write_stack(d / "in", TRUTHS, SHAPE, seed=3)
    bad = _bad_scenes(d / "in", SHAPE, "tif")
    scenes = [str(m) for m in moving] + bad
    res = rastalign.align_stack(scenes, ref, d / "out")
    return d, ref, scenes, truths, res


def test_every_good_scene_is_as_accurate_as_the_pair_command(vhr_stack):
    d, ref, scenes, truths, res = vhr_stack
    assert [r["status"] for r in res.rows] == ["ok"] * 8 + ["failed"] * 3
    ratios = []
    for row, truth in zip(res.rows[:8], truths):
        model = load_model(row["model"])
        err = model_error(model, truth, SHAPE, step=16, margin=32)
        assert np.percentile(err, 95) <= 0.03 and err.max() <= 0.06, (row["scene"], err.max())
        assert row["rms_residual_px"] < 0.05 and row["n_inliers"] >= 20
        ratios.append(np.percentile(err, 95) / row["predicted_error_p95_px"])  # the stack's column
        # the plain correction: the centre's content moves back by the truth's displacement there
        c = (np.array([(SHAPE[1] - 1) / 2.0]), np.array([(SHAPE[0] - 1) / 2.0]))
        tx, ty = truth(*c)
        assert abs(row["dx_px"] - (c[0][0] - tx[0])) < 0.02 and abs(row["dy_px"] - (c[1][0] - ty[0])) < 0.02
        with rasterio.open(row["output"]) as ds:
            assert (ds.height, ds.width) == SHAPE and ds.count == 1
    # the predicted error column: right within 3x on every scene, including the bias all 25 tie points of a
    # translated scene share (docs/concepts.md, Quality and failure)
    assert all(1 / 3 <= r <= 3 for r in ratios), ratios
    # the same scene through the pair command: the same model within the accuracy both reach
    pair = rastalign.align_image_pair(scenes[3], str(ref), str(d / "pair.tif"))
    stacked = load_model(res.rows[3]["model"])
    gx, gy = np.meshgrid(np.arange(32, SHAPE[1] - 32, 16.0), np.arange(32, SHAPE[0] - 32, 16.0))
    assert np.abs(np.subtract(pair.model(gx, gy), stacked(gx, gy))).max() < 0.02


def test_bad_scenes_are_reported_and_skipped(vhr_stack):
    d, ref, scenes, truths, res = vhr_stack
    failed = {r["scene"]: r for r in res.failed}
    assert set(failed) == set(scenes[8:])
    assert "not a readable raster" in failed[scenes[8]]["error"] and failed[scenes[8]]["exit_code"] == 2
    assert "quality check" in failed[scenes[9]]["error"] and failed[scenes[9]]["exit_code"] == 3
    assert "do not overlap" in failed[scenes[10]]["error"] and failed[scenes[10]]["exit_code"] == 2
    assert res.exit_code == 5  # input and alignment failures: several kinds
    names = sorted(p.name for p in (d / "out").iterdir())
    assert not any(n.startswith(("corrupt", "unrelated", "outside")) for n in names)
    assert not any(".rastalign-tmp-" in n for n in names)
    doc = json.loads((d / "out" / "stack_report.json").read_text())
    assert doc["n_scenes"] == 11 and doc["n_failed"] == 3 and len(doc["scenes"]) == 11
    with open(d / "out" / "stack_report.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == [r["status"] for r in res.rows]
    assert float(rows[0]["dx_px"]) == pytest.approx(res.rows[0]["dx_px"])
    assert (d / "out" / "stack_report.png").stat().st_size > 10_000


def test_skip_existing_redoes_nothing_then_finishes_an_interrupted_run(vhr_stack):
    d, ref, scenes, truths, res = vhr_stack
    good = scenes[:8]
    out = d / "out"
    stamps = {p: os.stat(p).st_mtime_ns for p in out.glob("*.aligned.tif*")}
    again = rastalign.align_stack(good, ref, out, skip_existing=True, plot=False)
    assert all(r["reused"] for r in again.rows) and again.exit_code == 0
    assert {p: os.stat(p).st_mtime_ns for p in out.glob("*.aligned.tif*")} == stamps
    assert again.rows[2]["rms_residual_px"] == res.rows[2]["rms_residual_px"]  # rows kept from the last report
    # an interrupted run: one scene lost its model (stopped between image and model), one never started
    os.unlink(res.rows[1]["model"])
    os.unlink(res.rows[5]["output"])
    os.unlink(res.rows[5]["model"])
    resumed = rastalign.align_stack(good, ref, out, skip_existing=True, plot=False)
    assert [r["reused"] for r in resumed.rows] == [i not in (1, 5) for i in range(8)]
    assert resumed.exit_code == 0 and os.path.exists(res.rows[5]["output"]) and os.path.exists(res.rows[1]["model"])
    for i in (1, 5):
        err = model_error(load_model(resumed.rows[i]["model"]), truths[i], SHAPE, step=16, margin=32)
        assert err.max() <= 0.06


def test_existing_outputs_are_refused_up_front_and_options_checked(vhr_stack, tmp_path):
    d, ref, scenes, truths, res = vhr_stack
    with pytest.raises(rastalign.OutputError, match="already exist.*--skip-existing"):
        rastalign.align_stack(scenes[:2], ref, d / "out")
    with pytest.raises(rastalign.InputError, match="unknown option 'n_det'"):
        rastalign.align_stack(scenes[:2], ref, tmp_path / "o", n_det=0.5)
    with pytest.raises(rastalign.InputError, match="listed twice"):
        rastalign.align_stack([scenes[0], scenes[0]], ref, tmp_path / "o")
    with pytest.raises(rastalign.InputError, match="no scenes"):
        rastalign.align_stack([], ref, tmp_path / "o")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_names_never_collide():
    names = output_names(["a/x.tif", "b/x.tif", "s3://bucket/y.cog.tif", "c/z.fits"], "out", ".tif")
    assert len(set(names)) == 4 and names[2] == "out/y.aligned.tif" and names[3] == "out/z.aligned.tif"
    assert names[0].startswith("out/x-") and names[1].startswith("out/x-")


def test_cli_stack_exit_status_and_one_line_per_failed_scene(vhr_stack, tmp_path, capsys):
    d, ref, scenes, truths, res = vhr_stack
    listing = tmp_path / "scenes.txt"
    listing.write_text("# two good scenes and a corrupt one\n" + "\n".join(scenes[:2]) + "\n\n" + scenes[8] + "\n")
    rc = rastalign_main(["stack", "--reference", str(ref), "--output-dir", str(tmp_path / "o"),
                         "--from-list", str(listing), "--resampling", "bilinear", "--no-plot"])
    cap = capsys.readouterr()
    summary = json.loads(cap.out)
    assert rc == 2 and summary["n_ok"] == 2 and summary["n_failed"] == 1
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rastalign stack: error: scene ") and "corrupt" in lines[0]
    rc = rastalign_main(["stack", "--reference", str(ref), "--output-dir", str(tmp_path / "p"), scenes[0],
                         "--n-det", "0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "n_det" in err[0] and err[0].startswith("rastalign stack: error: ")


def test_a_stack_without_matplotlib_says_why_it_has_no_plot(vhr_stack, monkeypatch, caplog):
    d, ref, scenes, truths, res = vhr_stack
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if not installed
    with caplog.at_level("WARNING", logger="rastalign"):
        again = rastalign.align_stack(scenes[:2], ref, d / "out", skip_existing=True)
    assert again.plot is None and again.summary()["stack_report_png"] is None
    said = [r.getMessage() for r in caplog.records if "stack_report.png" in r.getMessage()]
    assert len(said) == 1 and "matplotlib is not installed" in said[0] and "--no-plot" in said[0]


@pytest.mark.slow
def test_threads_and_a_local_cluster_write_the_same_scenes(vhr_stack, tmp_path):
    d, ref, scenes, truths, res = vhr_stack
    dist = rastalign.align_stack(scenes[:3], ref, tmp_path / "dist", scheduler="distributed", n_workers=2,
                                 plot=False)
    assert dist.exit_code == 0
    for a, b in zip(res.rows[:3], dist.rows):
        assert load_model(a["model"]).to_dict() == load_model(b["model"]).to_dict()
        x, _ = read_window(a["output"], (0, SHAPE[0], 0, SHAPE[1]))
        y, _ = read_window(b["output"], (0, SHAPE[0], 0, SHAPE[1]))
        assert np.array_equal(x, y)


@pytest.fixture(scope="module")
def fits_stack(tmp_path_factory):
    d = tmp_path_factory.mktemp("fits_stack")
    truths = [dict(t, header_extra={"DATE-OBS": f"2026-03-{20 - i:02d}T21:00:00"}) for i, t in enumerate(FTRUTHS)]
    tmpl, frames, fields = write_star_stack(d / "in", truths, FSHAPE, n_stars=300, seed=1)
    scenes = [str(f) for f in frames] + _bad_scenes(d / "in", FSHAPE, "fits")
    res = rastalign.align_stack(scenes, tmpl, d / "out")
    return d, tmpl, scenes, fields, res


def test_fits_frames_align_and_bad_frames_are_isolated(fits_stack):
    from astropy.io import fits

    d, tmpl, scenes, fields, res = fits_stack
    assert res.kind == "fits"
    assert [r["status"] for r in res.rows] == ["ok"] * 8 + ["failed"] * 3
    for row, f in zip(res.rows[:8], fields):
        model = load_model(row["model"])
        gx, gy = np.meshgrid(np.arange(24, FSHAPE[1] - 24, 8.0), np.arange(24, FSHAPE[0] - 24, 8.0))
        tx, ty = f.truth(gx, gy)
        inside = (tx >= 0) & (ty >= 0) & (tx <= FSHAPE[1] - 1) & (ty <= FSHAPE[0] - 1)
        mx, my = model(gx, gy)
        err = np.hypot(mx - tx, my - ty)[inside]
        assert float(np.sqrt(np.mean(err ** 2))) <= 0.01, (row["scene"], err.max())
        assert row["dx_crs"] == pytest.approx(row["dx_px"] * 0.036, abs=1e-3)  # arcsec (1e-5 deg pixels)
        with fits.open(row["output"]) as h:
            assert h[0].data.shape == FSHAPE and h[0].header["DATE-OBS"] == fits.getheader(row["scene"])["DATE-OBS"]
    failed = {r["scene"]: r["exit_code"] for r in res.failed}
    assert set(failed) == set(scenes[8:]) and failed[scenes[8]] == 2 and failed[scenes[9]] == 3
    assert res.exit_code == 5
    # acquisition order: dates decrease with the index, so the report plots them reversed
    dates = [r["acquired"] for r in res.rows[:8]]
    assert dates == sorted(dates, reverse=True) and dates[0].startswith("2026-03-20")


def test_fits_stack_skip_existing_keeps_every_frame(fits_stack):
    d, tmpl, scenes, fields, res = fits_stack
    again = rastalign.align_stack(scenes[:8], tmpl, d / "out", skip_existing=True, plot=False)
    assert all(r["reused"] for r in again.rows) and again.exit_code == 0


def _stack_in_a_fresh_process(tmpl, scenes, out, prelude=""):
    """``align_stack`` in a new single-threaded interpreter (where FITS frames go to forked worker processes):
    its return code, stderr and stack report."""
    import subprocess
    import sys

    code = (f"import rastalign, sys\n{prelude}\n"
            f"r = rastalign.align_stack({scenes!r}, {str(tmpl)!r}, {str(out)!r}, plot=False)\nsys.exit(r.exit_code)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    report = json.loads((out / "stack_report.json").read_text())
    return p.returncode, p.stderr, report


@pytest.mark.slow
def test_fits_frames_in_worker_processes_equal_frames_in_threads(fits_stack, tmp_path):
    """sep and the star fit hold the GIL: FITS frames go to forked worker processes, byte for byte what the
    thread path writes."""
    from astropy.io import fits

    d, tmpl, scenes, fields, res = fits_stack
    rc, err, report = _stack_in_a_fresh_process(tmpl, scenes[:8], tmp_path / "p")
    assert rc == 0, err
    assert report["execution"]["workers"] == "processes" and report["n_ok"] == 8
    threads = rastalign.align_stack(scenes[:3], tmpl, tmp_path / "t", scheduler="synchronous", plot=False)
    assert threads.info["workers"] == "threads"
    for a, b in zip(threads.rows, report["scenes"]):
        assert np.array_equal(fits.getdata(a["output"]), fits.getdata(b["output"]), equal_nan=True)
        assert load_model(a["model"]).to_dict() == load_model(b["model"]).to_dict()


@pytest.mark.slow
def test_the_progress_line_of_frame_workers_is_the_parents_alone(fits_stack, tmp_path):
    """Forked workers drop their copy of --progress: the line counts frames, never a worker's stale counts."""
    import subprocess
    import sys

    d, tmpl, scenes, fields, res = fits_stack
    p = subprocess.run([sys.executable, "-m", "rastalign.cli.demo", "stack", "--reference", str(tmpl), "--output-dir",
                        str(tmp_path / "p"), "--no-plot", "--progress", *scenes[:6]], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    draws = [ln.strip() for ln in p.stderr.replace("\r", "\n").splitlines() if "|" in ln]
    assert draws and draws[-1].startswith("6/6 scenes | frames in workers")
    assert not [ln for ln in draws if "frames in workers" not in ln and not ln.startswith("0/6 scenes | reference")]


@pytest.mark.slow
def test_ctrl_c_on_a_stack_says_what_it_kept(fits_stack, tmp_path):
    """Ctrl-C during a FITS stack: one line saying that the frames finished are complete, exit 130, every output
    present whole (image and model, no temporary file), and --skip-existing resumes from them."""
    import signal
    import subprocess
    import sys
    import time

    from rastalign.sinks.atomic import TMP_TAG

    d, tmpl, scenes, fields, res = fits_stack
    out = tmp_path / "p"
    cmd = [sys.executable, "-m", "rastalign.cli.demo", "stack", "--reference", str(tmpl), "--output-dir", str(out),
           "--no-plot", *scenes[:8]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and [p for p in os.listdir(out) if p.endswith(".aligned.fits.model.json")]):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no frame was ever finished"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode == 0:
        pytest.skip("the run completed before the signal took effect")
    assert proc.returncode == 130
    assert err.strip() == ("rastalign stack: error: interrupted; the scenes finished before it are complete "
                           "(--skip-existing resumes from them); no other output")
    names = os.listdir(out)
    assert not [p for p in names if TMP_TAG in p]
    images = [p for p in names if p.endswith(".aligned.fits")]
    assert images and sorted(p + ".model.json" for p in images) == sorted(p for p in names if p.endswith(".json")
                                                                           and p != "stack_report.json")
    again = rastalign.align_stack(scenes[:8], tmpl, out, skip_existing=True, plot=False)
    assert again.exit_code == 0 and sum(r["reused"] for r in again.rows) == len(images)


@pytest.mark.slow
def test_a_dead_frame_worker_fails_its_frames_in_their_rows(fits_stack, tmp_path):
    """A worker process that dies (killed, out of memory) fails the frames it held and those still queued, each in
    its row, with no traceback and nothing at their final paths; the frames already done stay done."""
    d, tmpl, scenes, fields, res = fits_stack
    # the frame worker runs the module's _one_scene: this one dies on the fourth frame, as a killed worker would
    prelude = ("import os, rastalign.pipelines.stack as st\none = st._one_scene\n"
               "def dying(kind, moving, *a):\n    return os._exit(9) if moving.endswith('03.fits') else one(kind, moving, *a)\n"
               "st._one_scene = dying")
    rc, err, report = _stack_in_a_fresh_process(tmpl, scenes[:8], tmp_path / "p", prelude)
    assert rc == 1 and "Traceback" not in err, err
    rows = report["scenes"]
    dead = [r for r in rows if r["status"] == "failed"]
    assert dead and all("the worker process aligning it died" in r["error"] for r in dead)
    assert any(r["scene"].endswith("03.fits") for r in dead)
    for r in rows:
        out = tmp_path / "p" / (os.path.basename(r["scene"]).replace(".fits", ".aligned.fits"))
        assert out.exists() == (r["status"] == "ok")


def test_accessor_aligns_a_time_stack_lazily_and_marks_a_failed_slice(vhr_stack):
    import dask
    import rioxarray
    import xarray as xr

    d, ref, scenes, truths, res = vhr_stack
    picks = [0, 4, 9]  # two good scenes and the unrelated image
    arrays = [rioxarray.open_rasterio(scenes[i], chunks=128) for i in picks]
    stack = xr.concat(arrays, dim="time").assign_coords(time=np.array(["2026-01-01", "2026-02-01", "2026-03-01"],
                                                                      dtype="datetime64[ns]"))
    reference = rioxarray.open_rasterio(ref, chunks=128)
    out = stack.coreg.align(reference, dim="time", resampling="bilinear")
    assert isinstance(out.data, dask.array.Array) and out.dims == stack.dims
    assert list(out.coreg_status.values[:2]) == ["ok", "ok"] and "quality check" in str(out.coreg_status.values[2])
    for k, i in enumerate(picks[:2]):
        one = arrays[k].coreg.align(reference, resampling="bilinear")
        assert np.array_equal(out.isel(time=k).values, one.values)
        c = ((SHAPE[1] - 1) / 2.0, (SHAPE[0] - 1) / 2.0)
        tx, ty = truths[i](np.array([c[0]]), np.array([c[1]]))
        assert abs(float(out.coreg_dx_px[k]) - (c[0] - tx[0])) < 0.02
    failed = out.isel(time=2).values
    assert np.all(failed == out.rio.nodata)
    assert json.loads(out.attrs["rastalign_models"])[2] is None


def test_fits_stack_with_the_wcs_correction_keeps_every_frames_pixels(fits_stack, tmp_path):
    from astropy.io import fits

    d, tmpl, scenes, fields, res = fits_stack
    out = rastalign.align_stack(scenes[:3], tmpl, tmp_path / "wcs", correction="wcs", plot=False)
    assert out.exit_code == 0
    for row in out.rows:
        assert np.array_equal(fits.getdata(row["output"]), fits.getdata(row["scene"]))
        assert fits.getheader(row["output"])["CTYPE1"].startswith("RA---TAN")
    again = rastalign.align_stack(scenes[:3], tmpl, tmp_path / "wcs", correction="wcs", skip_existing=True,
                                  plot=False)
    assert all(r["reused"] for r in again.rows)
