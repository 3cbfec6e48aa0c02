"""sep detection (chunked == whole), spalipy's filters, quad matching (rotation, scale, flip)."""
import numpy as np
import pytest
from astropy.table import Table
from scipy.spatial import cKDTree

from rastalign.errors import AlignmentError, InputError
from rastalign.geometry.affine import apply_affine
from rastalign.testing.stars import make_star_pair
from rastalign.tiepoints.detect import detect_array, filter_detections, parse_n_det
from rastalign.tiepoints.quads import build_quads, match_detections


@pytest.fixture(scope="module")
def pair():
    return make_star_pair((768, 768), 450, rotation_deg=30.0, shift=(4.2, -3.1), scale=1.05, seed=3)


def _xy(t):
    return np.column_stack([np.asarray(t["x"]), np.asarray(t["y"])])


def test_detections_are_accurate_and_chunking_changes_nothing(pair):
    whole = detect_array(pair.template)
    chunked = detect_array(pair.template, chunk=200)
    truth = pair.field.positions("template")
    d, _ = cKDTree(truth).query(_xy(whole))
    assert len(whole) > 300 and np.median(d) < 0.02
    # same sources found once each: every chunked detection pairs with a whole-frame one
    dd, idx = cKDTree(_xy(whole)).query(_xy(chunked))
    assert abs(len(chunked) - len(whole)) <= 0.02 * len(whole)
    assert np.median(dd) < 0.01 and len(np.unique(idx)) == len(idx)
    assert np.all(np.diff(np.asarray(chunked["flux"])) <= 0)  # brightest first


def test_all_nan_frame_is_refused():
    with pytest.raises(InputError, match="no valid pixel: all 4096 pixels"):
        detect_array(np.full((64, 64), np.nan))


def test_filters_follow_spalipy():
    t = Table({"x": [0.0, 1.0, 50.0, 100.0, 200.0, 300.0], "y": [0.0] * 6,
               "flux": [6.0, 5.0, 4.0, 3.0, 2.0, 1.0], "fwhm": [3.0, 3.0, 0.5, 3.0, np.nan, 3.0],
               "flag": [0, 0, 0, 2, 0, 0]})
    out = filter_detections(t, min_fwhm=1.0, bad_flag_bits=2, min_sep=5.0)
    assert list(out["x"]) == [200.0, 300.0]  # fwhm<1, flagged and *both* crowded members dropped
    assert list(filter_detections(t, min_fwhm=0, n_det=2)["x"]) == [0.0, 1.0]
    assert parse_n_det(0.5, 10) == 5 and parse_n_det(1, 10) == 1 and parse_n_det(1.0, 10) == 10
    with pytest.raises(AlignmentError, match=r"2 kept < min_n_match=3 \(6 detections, 1 below min_fwhm"):
        filter_detections(t, min_fwhm=1.0, bad_flag_bits=2, min_sep=5.0, min_n=3)


def test_quad_hashes_are_invariant_to_similarity_and_flip():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (12, 2))
    th = np.deg2rad(77.0)
    r = 1.3 * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) @ np.diag([-1.0, 1.0])
    xy2 = xy @ r.T + [1500.0, 1500.0]
    q1, h1 = build_quads(xy, (1000, 1000), 12, 1, 10.0)
    q2, h2 = build_quads(xy2, (3000, 3000), 12, 1, 10.0)
    assert len(q1) == len(q2) > 400
    assert np.allclose(np.sort(h1, axis=0), np.sort(h2, axis=0), atol=1e-9)


@pytest.mark.parametrize("flip", [False, True])
def test_match_recovers_transform(pair, flip):
    s = filter_detections(detect_array(pair.source), min_sep=6.0)
    t = filter_detections(detect_array(pair.template), min_sep=6.0)
    sxy, txy = _xy(s), _xy(t)
    if flip:  # mirror the source: the matcher must still find the (now improper) affine
        sxy = sxy * [-1.0, 1.0] + [767.0, 0.0]
    i, j, m, info = match_detections(sxy, txy, (768, 768), (768, 768))
    assert len(i) > 250 and info["n_candidates_tried"] <= 10
    # truth: template p -> source truth(p); so source q -> template generate(q)
    q = sxy[i] * ([-1.0, 1.0] if flip else 1.0) + ([767.0, 0.0] if flip else 0.0)
    gx, gy = pair.truth.generate(q[:, 0], q[:, 1])
    assert np.median(np.hypot(gx - txy[j, 0], gy - txy[j, 1])) < 0.05
    mx, my = apply_affine(m, sxy[i, 0], sxy[i, 1])
    assert np.median(np.hypot(mx - gx, my - gy)) < 0.05
    assert np.sign(np.linalg.det(m[:, :2])) == (-1 if flip else 1)
    again = match_detections(sxy, txy, (768, 768), (768, 768))
    assert np.array_equal(again[0], i) and np.array_equal(again[2], m)  # deterministic


def test_unrelated_fields_do_not_match():
    a = make_star_pair((512, 512), 300, seed=1).template
    b = make_star_pair((512, 512), 300, seed=2).template
    s, t = detect_array(a), detect_array(b)
    with pytest.raises(AlignmentError, match=r"no common stars found.*\(\d+ source, \d+ template detections"):
        match_detections(_xy(s), _xy(t), (512, 512), (512, 512))


def test_a_real_match_short_of_min_n_match_says_so(pair):
    s = filter_detections(detect_array(pair.source), min_sep=6.0)
    t = filter_detections(detect_array(pair.template), min_sep=6.0)
    n = len(match_detections(_xy(s), _xy(t), (768, 768), (768, 768))[0])
    with pytest.raises(AlignmentError, match=rf"too few matched stars: {n} < min_n_match={n + 5} .*"
                                             rf"lower --min-n-match \(to {n} or less\)"):
        match_detections(_xy(s), _xy(t), (768, 768), (768, 768), min_n_match=n + 5)


def test_file_detection_in_worker_processes_equals_serial(tmp_path, caplog):
    import logging
    import threading

    from rastalign.io.fits import inspect_fits
    from rastalign.io.sources import fits_source
    from rastalign.testing.stars import write_star_pair
    from rastalign.tiepoints.detect import detect

    src, _, _ = write_star_pair(tmp_path, (600, 600), 300, rotation_deg=5.0, seed=2)
    info = inspect_fits(src)
    serial = detect(fits_source(src).read, info.shape, chunk=256, threads=1)
    with caplog.at_level(logging.DEBUG, logger="rastalign.tiepoints.detect"):
        pooled = detect(fits_source(src).read, info.shape, chunk=256, threads=2, processes=True)
    if threading.active_count() == 1:
        assert "worker processes" in caplog.text
    assert len(serial) > 200 and serial.dtype == pooled.dtype
    for c in serial.dtype.names:
        assert np.array_equal(np.asarray(serial[c]), np.asarray(pooled[c]))
