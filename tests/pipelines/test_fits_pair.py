"""The FITS pair pipeline takes its options through the one validator: a typo, an option of rasters or a
correction of rasters is refused in one line before any work, and nothing is written; valid options of
every kind (star, warp, output, run) reach their layer."""
import numpy as np
import pytest
from astropy.io import fits

import rastalign


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from rastalign.testing.stars import write_star_pair

    d = tmp_path_factory.mktemp("fitspair")
    src, tmpl, truth = write_star_pair(d, (256, 320), 150, rotation_deg=1.5, shift=(4.25, -2.5), seed=7)
    return d, src, tmpl, truth


@pytest.mark.parametrize("bad,match", [({"n_dett": 0.9}, "unknown option 'n_dett' \\(for FITS frames\\)"),
                                       ({"max_rms_px": 2.0}, "unknown option 'max_rms_px' \\(for FITS frames\\)"),
                                       ({"correction": "georef"}, "resample or wcs for FITS frames"),
                                       ({"scheduler": "nope"}, "--scheduler must be one of")])
def test_a_wrong_option_is_refused_before_any_work(frames, tmp_path, bad, match):
    _, src, tmpl, _ = frames
    out = tmp_path / "out.fits"
    with pytest.raises(rastalign.InputError, match=match):
        rastalign.align_fits(str(src), str(out), template_path=str(tmpl), **bad)
    assert list(tmp_path.iterdir()) == []


def test_options_of_every_layer_reach_it(frames, tmp_path):
    """Star options (interp_order 1: bilinear, cval), warp (split_factor), output (overwrite), run
    (scheduler) and extras (model_out, write_mask) in one call; the model matches the truth."""
    _, src, tmpl, truth = frames
    out, model_out = tmp_path / "out.fits", tmp_path / "m.json"
    out.write_bytes(b"old")  # replaced: overwrite reached the output settings
    res = rastalign.align_fits(str(src), str(out), template_path=str(tmpl), interp_order=1, cval=-5.0,
                               split_factor=2, overwrite=True, scheduler="synchronous", model_out=str(model_out),
                               write_mask=True, spline_order=0)
    with fits.open(out) as hdul:
        data, mask = hdul[0].data, hdul["MASK"].data
        assert hdul[0].header["RAMODEL"] == "rastalign" and hdul[0].header["RANMATCH"] >= 20
    assert np.isfinite(data).all() and (data[mask == 1] == -5.0).all() and (mask == 1).any()
    ys, xs = np.mgrid[0:256:32, 0:320:32]
    got = np.stack(res.model(xs.ravel().astype(float), ys.ravel().astype(float)))
    want = np.stack(truth.truth(xs.ravel().astype(float), ys.ravel().astype(float)))
    assert np.abs(got - want).max() < 0.05
    assert rastalign.load_model(model_out).to_json() == res.model.to_json()
