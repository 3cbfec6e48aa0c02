"""align-fits / align-fits-simple end to end on FITS files on disk: success and every refusal."""
import json

import numpy as np
import pytest
from astropy.io import fits

from rastalign.cli.fits import main, main_simple
from rastalign.testing.stars import write_sextractor
from rastalign.testing.stars import make_star_pair, write_star_pair
from rastalign.tiepoints.detect import detect_array


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    src, tmpl, field = write_star_pair(d, (512, 512), 400, rotation_deg=5.0, shift=(6.5, -3.25), seed=2,
                                       ext_name="SCI")
    return d, src, tmpl, field


def _run(fn, argv, capsys):
    rc = fn([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _no_output(folder, name):
    assert not (folder / name).exists()
    assert not [p for p in folder.iterdir() if "rastalign-tmp" in p.name]


def test_align_fits_writes_template_grid_with_header_and_wcs(files, tmp_path, capsys):
    d, src, tmpl, field = files
    out = tmp_path / "out.fits"
    rc, so, se = _run(main, [src, out, "-tf", tmpl, "--source-ext", "SCI", "--template-ext", "1",
                             "--model-out", tmp_path / "m.json", "--min-n-match", "60"], capsys)
    assert rc == 0, se
    summary = json.loads(so)
    assert summary["output_image_path"] == str(out) and summary["quality"]["n_tie_points"] >= 200
    assert summary["quality"]["rms_residual_px"] < 0.05
    with fits.open(out) as h:
        assert h[0].data.dtype.kind == "f" and h[0].data.shape == (512, 512)
        assert h[0].header["OBJECT"] == "synthetic source" and h[0].header["CTYPE1"] == "RA---TAN"
        aligned = h[0].data
    t = fits.getdata(tmpl, "SCI")
    ok = np.isfinite(aligned)
    assert 0.9 < ok.mean() < 1.0 and np.isnan(aligned[~ok]).all()  # NaN where no source
    assert np.std((aligned - t)[ok]) < 0.1 * np.std(t)
    rc, _, se = _run(main, [src, out, "-tf", tmpl], capsys)  # exists: refused
    assert rc == 2 and se.startswith("align-fits: error: output exists")
    rc, so, _ = _run(main, [src, out, "-tf", tmpl, "--overwrite", "--cval", "0", "--spline-order", "0",
                            "--interp-order", "1", "--output-shape", "300,400", "--write-mask"], capsys)
    assert rc == 0
    with fits.open(out) as h:
        assert h[0].data.shape == (300, 400) and np.isfinite(h[0].data).all()
        assert h["MASK"].data.shape == (300, 400) and h["MASK"].data.any()


def test_preserve_footprints_and_simple(files, tmp_path, capsys):
    d, src, tmpl, _ = files
    rc, so, se = _run(main_simple, [src, tmp_path / "s.fits", tmpl, "--preserve-footprints", "--min-n-match", "60"],
                      capsys)
    assert rc == 0, se
    shp = json.loads(so)["output_shape"]
    assert shp[0] > 512 and shp[1] > 512
    with fits.open(tmp_path / "s.fits") as h:
        assert h[0].header["CRPIX1"] != fits.getheader(tmpl, "SCI")["CRPIX1"]  # WCS follows the padding


def test_catalogues_on_both_sides(files, tmp_path, capsys):
    d, src, tmpl, _ = files
    for name, path in (("s.cat", src), ("t.cat", tmpl)):
        write_sextractor(detect_array(fits.getdata(path, "SCI")), tmp_path / name)
    out = tmp_path / "c.fits"
    rc, so, se = _run(main, [src, out, "-sc", tmp_path / "s.cat", "-tc", tmp_path / "t.cat", "--min-n-match", "60"],
                      capsys)
    assert rc == 0, se
    assert json.loads(so)["quality"]["rms_residual_px"] < 0.05


def _one_line_failure(rc, err, code, *needles):
    assert rc == code, err
    assert err.count("\n") == 1 and err.startswith("align-fits: error: ") and "Traceback" not in err
    for n in needles:
        assert n in err, err


def test_bad_inputs_fail_cleanly(files, tmp_path, capsys):
    d, src, tmpl, _ = files
    out = "o.fits"
    o = tmp_path / out
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((2, 64, 64), np.float32)).writeto(cube)
    nan = tmp_path / "nan.fits"
    fits.PrimaryHDU(np.full((64, 64), np.nan, np.float32)).writeto(nan)
    other = tmp_path / "other.fits"
    fits.PrimaryHDU(make_star_pair((512, 512), 400, seed=99).template).writeto(other)
    sparse = tmp_path / "sparse.fits"
    fits.PrimaryHDU(make_star_pair((512, 512), 12, seed=7).template).writeto(sparse)
    badcat = tmp_path / "bad.cat"
    badcat.write_text("#   1 NUMBER\n#   2 X_IMAGE [pixel]\n1 10.0\n")
    cases = [
        ([src, o, "-tf", tmpl, "--source-ext", "7"], 2, ["HDU 7 not found", "2 HDU(s)"]),
        ([src, o, "-tf", tmpl, "--template-ext", "DQ"], 2, ["HDU 'DQ' not found"]),
        ([cube, o, "-tf", tmpl], 2, ["3-D cube of shape (2, 64, 64)"]),
        ([nan, o, "-tf", tmpl], 2, ["no valid pixel", "4096"]),
        ([other, o, "-tf", tmpl, "--source-ext", "0", "--min-n-match", "60"], 3, ["no common stars found"]),
        ([sparse, o, "-tf", tmpl, "--min-n-match", "100"], 3, ["too few detections in source", "min_n_match=100"]),
        ([sparse, o, "-tf", tmpl], 3, ["no common stars found", "9 source"]),  # auto min_n_match: tries, no match
        ([src, o, "-tf", tmpl, "-sc", badcat], 2, ["lacks column", "Y_IMAGE"]),
        ([tmp_path / "missing.fits", o, "-tf", tmpl], 2, ["file not found"]),
    ]
    for argv, code, needles in cases:
        rc, so, se = _run(main, argv, capsys)
        _one_line_failure(rc, se, code, *needles)
        assert so == ""
        _no_output(tmp_path, out)
    rc = main([str(src), str(o), "-tf", str(tmpl), "--source-ext", "7", "-v"])
    assert rc == 2 and "Traceback" in capsys.readouterr().err  # traceback only with -v
    with pytest.raises(SystemExit) as exc:
        main([str(src), str(o)])  # neither -tf nor -tc
    assert exc.value.code == 2
    assert "one of the arguments -tf/--template-fits -tc/--template-cat is required" in capsys.readouterr().err


def test_align_fits_keeps_the_sources_observation_cards(tmp_path, capsys):
    """Only the celestial WCS may come from the template: the source's dates, exposure and filter
    survive even when the template carries its own (astropy's WCS header repeats MJD-OBS, DATE-OBS...)."""
    src, tmpl, _ = write_star_pair(tmp_path, (400, 400), 300, rotation_deg=2.0, shift=(3.5, -2.0), seed=5)
    cards = {src: {"MJD-OBS": 59885.58, "DATE-OBS": "2022-11-05T14:00:00", "EXPTIME": 300.0, "FILTER": "F200W",
                   "MJD-BEG": 59885.57, "HISTORY": "calibrated"},
             tmpl: {"MJD-OBS": 59759.41, "DATE-OBS": "2022-07-01T10:00:00", "EXPTIME": 120.0, "FILTER": "F150W",
                    "MJD-END": 59759.42, "OBSGEO-X": 1.0e6}}
    for path, kv in cards.items():
        with fits.open(path, mode="update") as h:
            for k, v in kv.items():
                h[0].header[k] = v
    out = tmp_path / "out.fits"
    rc, so, se = _run(main, [src, out, "-tf", tmpl, "--min-n-match", "30"], capsys)
    assert rc == 0, se
    hdr, shdr, thdr = fits.getheader(out), fits.getheader(src), fits.getheader(tmpl)
    for k in ("MJD-OBS", "DATE-OBS", "EXPTIME", "FILTER", "MJD-BEG", "OBJECT"):
        assert hdr[k] == shdr[k], k
    assert "MJD-END" not in hdr and "OBSGEO-X" not in hdr and "calibrated" in str(hdr["HISTORY"])
    for k in ("CRVAL1", "CRVAL2", "CTYPE1", "CDELT2"):
        assert hdr[k] == thdr[k], k


def test_a_template_without_wcs_leaves_the_output_without_one(tmp_path, capsys):
    """The output lies on the template's grid: the source's WCS there puts every pixel at the wrong sky position
    (it was copied as it was, exit 0). With no WCS in the template the output carries none, and says why."""
    src, tmpl, _ = write_star_pair(tmp_path, (400, 400), 300, rotation_deg=2.0, shift=(3.5, -2.0), seed=5)
    wcs_keys = ("CTYPE", "CRPIX", "CRVAL", "CDELT", "CUNIT")
    with fits.open(tmpl, mode="update") as ht, fits.open(src, mode="update") as hs:
        for k in [k for k in ht[0].header if k.startswith(wcs_keys)]:
            hs[0].header[k] = ht[0].header.pop(k)
    out = tmp_path / "out.fits"
    rc, so, se = _run(main_simple, [src, out, tmpl], capsys)
    assert rc == 0, se
    hdr = fits.getheader(out)
    assert not [k for k in hdr if k.startswith(wcs_keys)] and hdr["OBJECT"] == "synthetic source"
    assert "the template has no WCS: the output carries none" in se
    rc, so, se = _run(main_simple, [tmpl, tmp_path / "back.fits", src], capsys)  # the other way: the template's
    assert rc == 0, se
    assert fits.getheader(tmp_path / "back.fits")["CRVAL1"] == 150.0 and "has no WCS" not in se


def test_jwst_epoch_keeps_its_own_dates(data_dir, tmp_path, capsys):
    src, tmpl = data_dir / "jwst_nircam_f200w_a2744_epoch2.fits", data_dir / "jwst_nircam_f200w_a2744_epoch1.fits"
    out = tmp_path / "out.fits"
    rc, so, se = _run(main, [src, out, "-tf", tmpl], capsys)
    assert rc == 0, se
    ext = json.loads(so)
    hdr = fits.getheader(out)
    with fits.open(src) as h:
        shdr = next(x.header for x in h if x.header.get("NAXIS", 0) == 2)
    assert hdr["MJD-OBS"] == shdr["MJD-OBS"] and hdr.get("DATE-OBS") == shdr.get("DATE-OBS"), ext


def test_every_output_is_checked_before_any_work(files, tmp_path, capsys):
    """A truncated source, an output that is not named as FITS, a model file in a missing folder or on the
    image's own path: one line, exit 2, and nothing written (the image is not left behind by a late failure)."""
    d, src, tmpl, _ = files
    trunc = tmp_path / "trunc.fits"
    trunc.write_bytes(src.read_bytes()[:200000])
    out = tmp_path / "o.fits"
    cases = [
        ([trunc, out, "-tf", tmpl], ["truncated or corrupt FITS", "trunc.fits"]),
        ([src, tmp_path / "o.png", "-tf", tmpl], ["FITS suffix", "'.png'"]),
        ([src, out, "-tf", tmpl, "--model-out", tmp_path / "missing" / "m.json"], ["missing"]),
        ([src, out, "-tf", tmpl, "--model-out", out], ["--model-out and output_filename name the same file"]),
    ]
    for argv, needles in cases:
        rc, so, se = _run(main, argv, capsys)
        _one_line_failure(rc, se, 2, *needles)
        assert so == "" and "Warning" not in se and "WARNING" not in se
        _no_output(tmp_path, "o.fits")
        _no_output(tmp_path, "o.png")
