"""FITS reading (HDUs, scaling, masks, refusals), the streamed writer, the lazy view, catalogues."""
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from rastalign.errors import InputError
from rastalign.io.catalogs import read_sextractor
from rastalign.testing.stars import write_sextractor
from rastalign.tiepoints.detections import as_detections
from rastalign.io.fits import inspect_fits, open_fits, read_fits, read_fits_window, resolve_ext
from rastalign.sinks.fits import FitsWriter


def _mef(path, data, name="SCI", **hdr):
    h = fits.ImageHDU(data, name=name)
    for k, v in hdr.items():
        h.header[k] = v
    fits.HDUList([fits.PrimaryHDU(), h]).writeto(path)
    return path


def test_read_by_index_and_name(tmp_path):
    d = np.arange(30 * 40, dtype=">f4").reshape(30, 40)
    p = _mef(tmp_path / "a.fits", d)
    for ext in (1, "SCI", "sci", "1", None):  # None: first HDU with image data
        data, valid, info = read_fits(p, ext)
        assert info.ext == 1 and info.shape == (30, 40)
        assert data.dtype.byteorder in ("=", "<", "|") and np.array_equal(data, d.astype(np.float32))
        assert valid.all()


def test_scaled_big_endian_integers_and_blank(tmp_path):
    raw = np.arange(-50, 50, dtype=">i2").reshape(10, 10)
    p = tmp_path / "s.fits"
    hdu = fits.PrimaryHDU(raw)
    hdu.writeto(p)
    with fits.open(p, mode="update", do_not_scale_image_data=True) as h:  # keep raw values, add scaling cards
        h[0].header["BSCALE"] = 0.5
        h[0].header["BZERO"] = 100.0
        h[0].header["BLANK"] = -50
    data, valid = read_fits_window(p, 0, (0, 10, 0, 10))
    expect = raw.astype(float) * 0.5 + 100.0
    assert not valid[0, 0] and np.isnan(data[0, 0, 0])
    assert np.allclose(data[0][valid], expect[valid])
    assert valid.sum() == 99


def test_nan_and_mask_hdu_are_invalid(tmp_path):
    d = np.ones((20, 20), np.float32)
    d[3, 4] = np.nan
    m = np.zeros((20, 20), np.uint8)
    m[10:12, 10:12] = 1
    p = tmp_path / "m.fits"
    fits.HDUList([fits.PrimaryHDU(d), fits.ImageHDU(m, name="MASK")]).writeto(p)
    _, valid = read_fits_window(p, 0, (0, 20, 0, 20), mask_ext=resolve_ext(p, "MASK"))
    assert valid.sum() == 400 - 1 - 4 and not valid[3, 4] and not valid[10, 11]


def test_refusals_are_one_line(tmp_path):
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((3, 8, 8), np.float32)).writeto(cube)
    with pytest.raises(InputError, match=r"3-D cube of shape \(3, 8, 8\)"):
        inspect_fits(cube)
    flat = tmp_path / "plane.fits"
    fits.PrimaryHDU(np.ones((1, 8, 8), np.float32)).writeto(flat)  # degenerate cube: one plane is fine
    assert inspect_fits(flat).shape == (8, 8)
    p = _mef(tmp_path / "a.fits", np.zeros((8, 8), np.float32))
    with pytest.raises(InputError, match=r"HDU 7 not found .* 2 HDU\(s\)"):
        inspect_fits(p, 7)
    with pytest.raises(InputError, match=r"HDU 'DQ' not found .*'PRIMARY', 'SCI'"):
        inspect_fits(p, "DQ")
    with pytest.raises(InputError, match="holds no image data"):
        inspect_fits(p, 0)
    nan = tmp_path / "nan.fits"
    fits.PrimaryHDU(np.full((8, 8), np.nan, np.float32)).writeto(nan)
    with pytest.raises(InputError, match="all 64 are NaN"):
        read_fits(nan)
    for bad in (tmp_path / "missing.fits", tmp_path):
        with pytest.raises(InputError):
            inspect_fits(bad)
    for e in (InputError,):
        try:
            inspect_fits(cube)
        except e as exc:
            assert "\n" not in str(exc)


def test_writer_streams_chunks_keeps_header_and_template_wcs(tmp_path):
    src_hdr = fits.Header({"OBJECT": "M31", "EXPTIME": 30.0, "CRPIX1": 1.0, "CTYPE1": "RA---TAN"})
    tmpl_hdr = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 50.0, "CRPIX2": 40.0,
                            "CRVAL1": 10.0, "CRVAL2": 41.0, "CDELT1": -1e-4, "CDELT2": 1e-4})
    out = tmp_path / "o.fits"
    full = np.random.default_rng(0).normal(size=(1, 70, 90)).astype(np.float32)
    with FitsWriter(out, (70, 90), 1, "float32", header=src_hdr, wcs_header=tmpl_hdr, mask=True) as w:
        for y0 in (0, 32, 64):
            for x0 in (0, 50):
                box = (y0, min(y0 + 32, 70), x0, min(x0 + 50, 90))
                w.write(box, full[:, box[0]:box[1], box[2]:box[3]])
                w.write_mask(box, np.ones((box[1] - box[0], box[3] - box[2])))
        assert not out.exists()  # nothing at the final path before commit
        w.commit()
    with fits.open(out) as h:
        assert np.array_equal(h[0].data, full[0])
        assert h[0].header["OBJECT"] == "M31" and h[0].header["EXPTIME"] == 30.0
        assert h[0].header["CRPIX1"] == 50.0 and h[0].header["CRVAL2"] == 41.0
        assert h["MASK"].data.sum() == 70 * 90
    assert [p.name for p in tmp_path.iterdir()] == ["o.fits"]


def test_writer_abort_leaves_nothing(tmp_path):
    out = tmp_path / "x.fits"
    with pytest.raises(RuntimeError):
        with FitsWriter(out, (10, 10), 2, "float32") as w:
            w.write((0, 10, 0, 10), np.zeros((2, 10, 10)))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_open_fits_is_lazy_and_exact(tmp_path):
    d = np.random.default_rng(1).normal(size=(300, 200)).astype(np.float32)
    d[5, 5] = np.nan
    p = _mef(tmp_path / "l.fits", d, CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=1.0, CRPIX2=1.0,
             CRVAL1=1.0, CRVAL2=1.0, CDELT1=1e-4, CDELT2=1e-4)
    da = open_fits(p, chunks=128)
    assert da.dims == ("band", "y", "x") and da.shape == (1, 300, 200)
    assert da.data.chunks == ((1,), (128, 128, 44), (128, 72))
    assert da.attrs["wcs"] is not None and da.attrs["fits_header"]["EXTNAME"] == "SCI"
    got = da.isel(y=slice(100, 250), x=slice(30, 180)).values[0]
    assert np.array_equal(got, d[100:250, 30:180], equal_nan=True)
    assert np.isnan(da.values[0, 5, 5])


def test_table_lookup_distortion_cards_never_travel_to_another_file(caplog):
    """CPDIS/DP and D2IM cards point at image extensions of their own file: a source's are dropped with its WCS
    (on the template grid, or under a corrected WCS), a template's are not copied (their tables stay behind)."""
    from rastalign.io.fits_cards import drop_wcs, output_header

    src = fits.Header({"OBJECT": "M31", "CTYPE1": "RA---TAN-SIP", "A_ORDER": 2, "CPDIS1": "Lookup",
                       "D2IMEXT": "a.fits", "D2IMDIS2": "Lookup", "DPOINT": 3})
    src.append(fits.Card.fromstring("DP1     = 'EXTVER: 1'"))
    tmpl = fits.Header({"CTYPE1": "RA---TAN", "CRPIX1": 5.0, "CQDIS2": "Lookup", "EXPTIME": 9.0})
    tmpl.append(fits.Card.fromstring("DQ2     = 'EXTVER: 2'"))
    lookup = ("CPDIS", "CQDIS", "DP1", "DQ2", "D2IM")
    out = output_header(src, tmpl)
    assert out["CRPIX1"] == 5.0 and out["CTYPE1"] == "RA---TAN" and out["OBJECT"] == "M31" and out["DPOINT"] == 3
    assert "A_ORDER" not in out and "EXPTIME" not in out and not [k for k in out if k.startswith(lookup)]
    assert "table-lookup distortion (CQDIS2, DQ2.EXTVER) is not copied" in caplog.text
    left = drop_wcs(src.copy())
    assert list(left) == ["OBJECT", "DPOINT"]


def test_a_shifted_header_moves_every_wcs_reference_pixel():
    """An output grid offset from the template's moves CRPIX of the primary WCS and of each alternate one
    (copied card for card, an unshifted CRPIX1A would put the alternate WCS off by the offset)."""
    from rastalign.io.fits_cards import shifted_header

    h = fits.Header({"CRPIX1": 10.0, "CRPIX2": 20.0, "CRPIX1A": 1.0, "CRPIX2A": 2.0, "CRVAL1A": 5.0})
    pre = np.array([[1.0, 0.0, -3.0], [0.0, 1.0, 4.5]])
    s = shifted_header(h, pre)
    assert (s["CRPIX1"], s["CRPIX2"], s["CRPIX1A"], s["CRPIX2A"], s["CRVAL1A"]) == (13.0, 15.5, 4.0, -2.5, 5.0)
    assert h["CRPIX1A"] == 1.0  # a copy


@pytest.mark.parametrize("cards", [
    {"CD1_1": -2.0e-5, "CD1_2": 1.0e-6, "CD2_1": 1.5e-6, "CD2_2": 2.1e-5},
    {"CDELT1": -3.0e-5, "CDELT2": 3.0e-5, "PC1_1": 0.8, "PC1_2": -0.6, "PC2_1": 0.6, "PC2_2": 0.8},
    {"CDELT1": -0.11, "CDELT2": 0.11, "CROTA2": 30.0, "CUNIT1": "arcsec", "CUNIT2": "arcsec"},
    {"CTYPE1": "GLON-CAR", "CTYPE2": "GLAT-CAR", "CDELT1": -0.01, "CDELT2": 0.01}])
def test_pixel_scale_from_the_cards_is_astropys(cards):
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    from rastalign.io.fits_cards import pixel_scale_deg

    h = fits.Header({"NAXIS": 2, "NAXIS1": 100, "NAXIS2": 80, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
                     "CRPIX1": 50.0, "CRPIX2": 40.0, "CRVAL1": 150.0, "CRVAL2": 2.0, **cards})
    expected = float(np.mean(proj_plane_pixel_scales(WCS(h).celestial)))
    assert pixel_scale_deg(h) == pytest.approx(expected, rel=1e-12)
    assert pixel_scale_deg(fits.Header({"CTYPE1": "FREQ", "CTYPE2": "STOKES", "CDELT1": 1.0})) is None


def test_a_tile_compressed_hdu_reads_as_its_image(tmp_path):
    d = (np.arange(300 * 200, dtype=np.int32).reshape(300, 200) * 7) % 5003
    p = tmp_path / "c.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(d, compression_type="RICE_1")]).writeto(p)
    info = inspect_fits(p)
    assert info.ext == 1 and info.shape == (300, 200)
    data, valid = read_fits_window(p, info.ext, (10, 50, 20, 90))
    assert valid.all() and np.array_equal(data[0], d[10:50, 20:90])


def test_sextractor_catalogue_is_zero_based(tmp_path):
    t = Table({"x": [10.0, 20.5], "y": [5.0, 7.25], "flux": [100.0, 50.0], "fwhm": [3.0, 2.5], "flag": [0, 4]})
    p = tmp_path / "c.cat"
    write_sextractor(t, p)
    assert " 11.00000 " in p.read_text()  # 1-based on disk
    back = as_detections(read_sextractor(p), origin=1)
    assert np.allclose(back["x"], t["x"]) and np.allclose(back["y"], t["y"]) and list(back["flag"]) == [0, 4]


def test_catalogue_missing_columns(tmp_path):
    p = tmp_path / "bad.cat"
    p.write_text("#   1 NUMBER\n#   2 X_IMAGE [pixel]\n#   3 FLUX_AUTO [count]\n1 10.0 5.0\n")
    with pytest.raises(InputError, match="lacks column.*Y_IMAGE.*has: NUMBER, X_IMAGE, FLUX_AUTO"):
        read_sextractor(p)
    with pytest.raises(InputError, match="lacks column.*flux"):
        as_detections(Table({"x": [1.0], "y": [2.0]}))
    with pytest.raises(InputError, match="flag must hold integers"):
        as_detections(Table({"x": [1.0], "y": [2.0], "flux": [1.0], "flag": [0.5]}))
    with pytest.raises(InputError, match="columns of unequal length"):
        as_detections({"x": [1.0, 2.0, 3.0], "y": [2.0], "flux": [1.0, 1.0, 1.0]})
    with pytest.raises(InputError, match="is not a table"):
        as_detections([[1.0, 2.0, 3.0]])
    got = as_detections(np.array([(3.0, 4.0, 9.0)], dtype=[("X", float), ("Y", float), ("FLUX", float)]))
    assert got.dtype.names == ("x", "y", "flux", "fwhm", "flag") and got["x"][0] == 3.0 and np.isnan(got["fwhm"][0])
