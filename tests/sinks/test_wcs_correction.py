"""``--correction wcs``: the source's pixels and cards unchanged, a WCS + SIP onto the template's sky."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from rastalign.cli.fits import main as align_fits_main
from rastalign.testing.stars import write_star_pair

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
JWST = [DATA / f"jwst_nircam_f200w_a2744_epoch{k}.fits" for k in (1, 2)]
PIXEL_DEG = 1e-5  # write_star_pair's template pixel size


def _sky_px(w_a, xy_a, w_b, xy_b):
    """Sky distance (template px) between ``w_a`` at ``xy_a`` and ``w_b`` at ``xy_b`` (0-based pixels)."""
    a = np.radians(w_a.all_pix2world(xy_a, 0))
    b = np.radians(w_b.all_pix2world(xy_b, 0))
    h = np.sin((a[:, 1] - b[:, 1]) / 2) ** 2 + np.cos(a[:, 1]) * np.cos(b[:, 1]) * np.sin((a[:, 0] - b[:, 0]) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(h))) / PIXEL_DEG


@pytest.mark.parametrize("ext_name", [None, "SCI"])
def test_distorted_frame_gets_a_sip_wcs_on_the_template_sky(tmp_path, capsys, ext_name):
    shape = (640, 640)
    src, tmpl, field = write_star_pair(tmp_path, shape, 450, rotation_deg=1.5, scale=1.01, shift=(7.3, -4.1),
                                       distortion_px=3.0, seed=2, ext_name=ext_name,
                                       header_extra={"DATE-OBS": "2026-02-03T04:05:06", "EXPTIME": 120.0,
                                                     "FILTER": "r'", "BUNIT": "ADU"})
    if ext_name:  # a multi-extension file: a table after the image must survive
        with fits.open(src, mode="append") as h:
            h.append(fits.BinTableHDU.from_columns([fits.Column(name="flag", format="J", array=np.arange(5))],
                                                   name="EXTRA"))
    out = tmp_path / "corrected.fits"
    rc = align_fits_main([str(src), str(out), "-tf", str(tmpl), "--correction", "wcs"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["wcs"]["sip_order"] >= 3 and summary["correction"]["frame"] == "template pixels"
    with fits.open(src) as a, fits.open(out) as b:
        assert len(a) == len(b) and [h.name for h in a] == [h.name for h in b]
        i = 1 if ext_name else 0
        assert np.array_equal(a[i].data, b[i].data) and a[i].data.dtype == b[i].data.dtype
        for key in ("OBJECT", "DATE-OBS", "EXPTIME", "FILTER", "BUNIT"):
            assert b[i].header[key] == a[i].header[key]
        if ext_name:
            assert np.array_equal(b["EXTRA"].data["flag"], np.arange(5))
        assert b[i].header["CTYPE1"] == "RA---TAN-SIP" and "A_3_0" in b[i].header and "AP_1_0" in b[i].header
        new = WCS(b[i].header)
    tw = WCS(fits.getheader(tmpl, 1 if ext_name else 0))
    sxy, txy = field.positions("source"), field.positions("template")
    inside = np.all((sxy > 8) & (sxy < shape[0] - 9) & (txy > 8) & (txy < shape[0] - 9), axis=1)
    err = _sky_px(new, sxy[inside], tw, txy[inside])
    assert err.max() < 0.01 and np.sqrt(np.mean(err ** 2)) < 0.003, err.max()
    # the inverse SIP (sky -> pixel) brings the template's sky back onto the source's stars
    back = new.all_world2pix(tw.all_pix2world(txy[inside], 0), 0)
    assert np.abs(back - sxy[inside]).max() < 0.02


@pytest.mark.slow
def test_a_template_without_wcs_is_refused_in_one_line(tmp_path):
    src, tmpl, _ = write_star_pair(tmp_path, (384, 384), 200, shift=(3.0, 2.0), seed=3)
    with fits.open(tmpl, mode="update") as h:
        for key in [k for k in h[0].header if k.startswith(("CTYPE", "CRPIX", "CRVAL", "CDELT", "CUNIT"))]:
            del h[0].header[key]
    r = subprocess.run([sys.executable, "-m", "rastalign.cli.fits", str(src), str(tmp_path / "o.fits"), "-tf",
                        str(tmpl), "--correction", "wcs"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "needs a celestial WCS on the template" in r.stderr and "--correction resample" in r.stderr
    assert not (tmp_path / "o.fits").exists()


@pytest.mark.skipif(not all(p.exists() for p in JWST), reason="../shared/data not present")
def test_jwst_epoch_two_keeps_its_pixels_and_dates_with_a_corrected_wcs(tmp_path, capsys):
    out = tmp_path / "epoch2_wcs.fits"
    rc = align_fits_main([str(JWST[1]), str(out), "-tf", str(JWST[0]), "--correction", "wcs"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["wcs"]["sky_max_error_px"] < 0.01
    with fits.open(JWST[1]) as a, fits.open(out) as b:
        assert np.array_equal(a[0].data, b[0].data, equal_nan=True)
        assert b[0].header["MJD-OBS"] == a[0].header["MJD-OBS"]  # epoch 2's, not the template's
        old, new = WCS(a[0].header), WCS(b[0].header)
    ny, nx = summary["source_shape"]
    g = np.column_stack([c.ravel() for c in np.meshgrid(np.linspace(0, nx - 1, 9), np.linspace(0, ny - 1, 9))])
    moved = _sky_px(old, g, new, g) * PIXEL_DEG / 8.5488718986004e-06  # in JWST pixels
    assert moved.max() < 2.0  # the epochs are registered to about a pixel: the correction is small


@pytest.mark.skipif(not all(p.exists() for p in JWST), reason="../shared/data not present")
def test_a_jwst_frame_warped_by_a_known_mapping_gets_its_wcs_back(tmp_path, capsys):
    """The source is epoch 1 resampled by a known affine M (source pixel s shows the template at M(s)),
    written without any WCS: its corrected WCS must put every source pixel s on the template's sky at M(s)."""
    import warnings

    from rastalign.io.fits_cards import is_wcs_key
    from rastalign.model.model import AlignmentModel
    from rastalign.warp.kernel import warp_array

    with fits.open(JWST[0]) as h:
        tmpl_data, tmpl_hdr = h[0].data.astype(np.float32), h[0].header.copy()
    th = np.deg2rad(0.4)
    m = np.array([[1.002 * np.cos(th), -1.002 * np.sin(th), 3.2], [1.002 * np.sin(th), 1.002 * np.cos(th), -1.7]])
    pull = AlignmentModel(m, output_shape=tmpl_data.shape)
    vals, ok = warp_array(tmpl_data[None], pull, tmpl_data.shape, valid=np.isfinite(tmpl_data), resampling="cubic")
    src_hdr = fits.Header([c for c in tmpl_hdr.cards if not is_wcs_key(c.keyword)])
    src_hdr["OBSERVER"] = "synthetic epoch"
    src = tmp_path / "warped_epoch1.fits"
    fits.PrimaryHDU(np.where(ok, vals[0], np.nan).astype(np.float32), header=src_hdr).writeto(src)
    out = tmp_path / "warped_wcs.fits"
    assert align_fits_main([str(src), str(out), "-tf", str(JWST[0]), "--correction", "wcs"]) == 0
    capsys.readouterr()
    def read(header):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return WCS(header), {str(w.message).split(":")[0] for w in caught}

    new, said = read(fits.getheader(out))
    tw, said_of_template = read(tmpl_hdr)
    assert said <= said_of_template, said  # nothing beyond what the JWST header itself earns (OBSGEO 'obsfix')
    ny, nx = tmpl_data.shape
    gx, gy = np.meshgrid(np.arange(60, nx - 60, 20.0), np.arange(60, ny - 60, 20.0))
    s = np.column_stack([gx.ravel(), gy.ravel()])
    t = s @ m[:, :2].T + m[:, 2]
    err = _sky_px(new, s, tw, t) * PIXEL_DEG / tw.proj_plane_pixel_scales()[0].to_value("deg")
    assert np.sqrt(np.mean(err ** 2)) < 0.02, np.sqrt(np.mean(err ** 2))
    assert fits.getheader(out)["OBSERVER"] == "synthetic epoch"
    assert np.array_equal(fits.getdata(out), fits.getdata(src), equal_nan=True)


def test_the_accessor_corrects_a_fits_arrays_wcs_like_the_cli(tmp_path, capsys):
    import rastalign

    src, tmpl, _ = write_star_pair(tmp_path, (512, 512), 400, rotation_deg=0.8, scale=1.004, shift=(5.1, -2.3),
                                   distortion_px=2.0, seed=4)
    assert align_fits_main([str(src), str(tmp_path / "cli.fits"), "-tf", str(tmpl), "--correction", "wcs"]) == 0
    capsys.readouterr()
    moving = rastalign.open_fits(src)
    out = moving.coreg.align(rastalign.open_fits(tmpl), correction="wcs")
    assert out.data is moving.data  # no pixel is computed or changed
    g = np.column_stack([c.ravel() for c in np.meshgrid(np.arange(0, 512, 37.0), np.arange(0, 512, 37.0))])
    cli = WCS(fits.getheader(tmp_path / "cli.fits"))
    assert _sky_px(out.attrs["wcs"], g, cli, g).max() < 1e-6
    assert json.loads(out.attrs["rastalign_correction"])["correction"] == "wcs"
