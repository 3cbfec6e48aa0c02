"""What the spalipy-compatible ``Spalipy`` class promises, checked against a known truth.

Every frame here is drawn by :mod:`rastalign.testing.stars` from one star list on the sky
(the template grid) and a :class:`~rastalign.testing.pairs.Truth`: the pull map **template px ->
source px**, ``(x, y)``, 0-based. spalipy's transforms go the other way (source -> template),
which is ``truth.generate``. Nothing is compared with another tool's numbers or with the
output of an earlier run: each assertion is "the class recovers the truth to within a
tolerance that the noise allows".
"""
import gc
from pathlib import Path

import numpy as np
import pytest

from rastalign import Spalipy
from rastalign.testing.pairs import Truth
from rastalign.testing.stars import StarField, make_field, make_star_pair, render_frame

SHAPE = (320, 320)
N_STARS = 300
TRUTH_A = dict(rotation_deg=4.0, shift=(6.5, -3.25), scale=1.02)
TRUTH_B = dict(rotation_deg=-2.5, shift=(-9.0, 4.75), scale=0.99)


# ---------------------------------------------------------------------------------- helpers
def grid(shape, step=16):
    """Output pixel centres every ``step`` px: ``(x, y)`` 1-D arrays."""
    gy, gx = np.mgrid[0:shape[0]:step, 0:shape[1]:step].astype(float)
    return gx.ravel(), gy.ravel()


def inside(x, y, shape, margin=0.0):
    return (x >= margin) & (x <= shape[1] - 1 - margin) & (y >= margin) & (y <= shape[0] - 1 - margin)


def pull_error(pull, truth, shape, step=16, source_shape=None):
    """Largest |pull - truth| (source px) over output pixels whose true source position is in the source."""
    x, y = grid(shape, step)
    tx, ty = truth(x, y)
    px, py = pull(x, y)
    keep = inside(tx, ty, source_shape or shape)
    return float(np.hypot(px - tx, py - ty)[keep].max())


def forward_matrix(truth):
    """The truth's affine part as spalipy orients it: source px -> template px (2x3)."""
    return np.linalg.inv(np.vstack([truth.matrix, [0.0, 0.0, 1.0]]))[:2]


def centroid(img, x, y, sky, r=3):
    """First moment of ``img - sky`` in a ``(2r+1)^2`` box around the pixel nearest ``(x, y)``."""
    ix, iy = int(round(x)), int(round(y))
    w = np.clip(img[iy - r:iy + r + 1, ix - r:ix + r + 1] - sky, 0.0, None)
    oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
    return ix + (w * ox).sum() / w.sum(), iy + (w * oy).sum() / w.sum()


def uses_model(s, entry=0):
    """The class's whole mapping (affine + field) as a pull map, through its public ``full_transform``."""
    def pull(x, y):
        out = s.full_transform(np.column_stack([x, y]), entry=entry, inverse=True)
        return out[:, 0], out[:, 1]
    return pull


# ---------------------------------------------------------------------------------- shared frames
class Sky:
    """One star list, its template frame and source frames rendered through chosen truths."""

    def __init__(self):
        self.stars = make_field(SHAPE, None, N_STARS, seed=11, margin=64.0)
        self.template = render_frame(self.stars, "template", seed=11)
        self.truth_a = Truth(SHAPE, **TRUTH_A)
        self.truth_b = Truth(SHAPE, **TRUTH_B)
        self.source_a = self.render(self.truth_a, seed=12)
        self.source_b = self.render(self.truth_b, seed=13)

    def field(self, truth):
        return StarField(self.stars.xy, self.stars.flux, truth, SHAPE, SHAPE)

    def render(self, truth, seed):
        return render_frame(self.field(truth), "source", seed=seed)

    def positions(self, truth, role):
        """Star positions ``(n, 2)`` inside the ``role`` frame, and their fluxes."""
        xy = self.field(truth).positions(role)
        keep = inside(xy[:, 0], xy[:, 1], SHAPE)
        return xy[keep], self.stars.flux[keep]


@pytest.fixture(scope="module")
def sky():
    return Sky()


@pytest.fixture(scope="module")
def aligned_a(sky):
    s = Spalipy(sky.source_a, template_data=sky.template)
    s.align()
    return s


@pytest.fixture(scope="module")
def few_stars():
    """A sparse frame: a dozen stars that are not the template's, enough to pass the detection filters
    but not to match."""
    sparse = make_field(SHAPE, None, 12, seed=21, **TRUTH_A)
    return render_frame(sparse, "source", seed=21)


# ---------------------------------------------------------------------------------- single mode
def test_single_mode_recovers_the_truth_and_puts_stars_on_stars(sky, aligned_a):
    s = aligned_a
    assert s.alignment_failed is False
    assert s.aligned_data.shape == SHAPE and s.aligned_data.dtype == np.float32
    assert pull_error(uses_model(s), sky.truth_a, SHAPE) < 0.02
    assert s.spline_transform is None  # no distortion in the truth: nothing for a field to add

    # the matched pairs are the same stars: the truth carries each template star onto its source star
    sm, tm = s.source_det_matched, s.template_det_matched
    assert len(sm) == len(tm) >= 100
    tx, ty = sky.truth_a(np.asarray(tm["x"]), np.asarray(tm["y"]))
    assert np.median(np.hypot(tx - np.asarray(sm["x"]), ty - np.asarray(sm["y"]))) < 0.1

    # isolated bright stars sit where the template has them
    xy, flux = sky.positions(Truth(SHAPE), "template")
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(d, np.inf)
    sx, sy = sky.truth_a(xy[:, 0], xy[:, 1])
    pick = (flux > 3e4) & (d.min(axis=1) > 10) & inside(xy[:, 0], xy[:, 1], SHAPE, 8) & inside(sx, sy, SHAPE, 8)
    assert pick.sum() >= 10
    sky_level = float(np.nanmedian(sky.template))
    for x, y in xy[pick]:
        cx, cy = centroid(s.aligned_data, x, y, sky_level)
        rx, ry = centroid(sky.template, x, y, sky_level)
        assert np.hypot(cx - rx, cy - ry) < 0.05
        assert np.hypot(rx - x, ry - y) < 0.2  # the measure itself is sound

    # where the source has no pixel, spalipy's cval (NaN by default) and a True no-data mask
    gx, gy = np.meshgrid(np.arange(SHAPE[1], dtype=float), np.arange(SHAPE[0], dtype=float))
    tx, ty = sky.truth_a(gx, gy)
    off = ~inside(tx, ty, SHAPE, -1.0)
    assert off.any() and np.isnan(s.aligned_data[off]).all() and s.aligned_mask[off].all()
    assert np.isfinite(s.aligned_data[inside(tx, ty, SHAPE, 3.0)]).all()


def test_affine_transform_is_the_truth_seen_from_the_source(sky, aligned_a):
    at = aligned_a.affine_transform
    truth = sky.truth_a
    fwd = forward_matrix(truth)

    # spalipy's similarity parameters: source -> template turns by -4 deg and scales by 1/1.02
    assert at.rotation == pytest.approx(-TRUTH_A["rotation_deg"], abs=0.01)
    assert at.scale == pytest.approx(1.0 / TRUTH_A["scale"], abs=2e-4)
    a, b, c, d = at.v
    assert a == pytest.approx(fwd[0, 0], abs=2e-4) and b == pytest.approx(fwd[1, 0], abs=2e-4)
    assert c == pytest.approx(fwd[0, 2], abs=0.05) and d == pytest.approx(fwd[1, 2], abs=0.05)

    lin, off = at.matrix_form()
    assert lin.shape == (2, 2) and off.shape == (2,)
    np.testing.assert_allclose(lin, fwd[:, :2], atol=2e-4)
    np.testing.assert_allclose(off, fwd[:, 2], atol=0.05)

    # apply_transform, in both of spalipy's layouts, is the truth's generating map
    x, y = grid(SHAPE)
    ex, ey = truth.generate(x, y)
    pts = at.apply_transform(np.column_stack([x, y]))
    assert pts.shape == (x.size, 2)
    assert np.hypot(pts[:, 0] - ex, pts[:, 1] - ey).max() < 0.02
    stack = at.apply_transform(np.stack([x.reshape(4, -1), y.reshape(4, -1)]))
    assert stack.shape == (2, 4, x.size // 4)
    np.testing.assert_allclose(stack.reshape(2, -1), pts.T, rtol=0, atol=1e-9)

    # inverse() is the pull map, and the two compose to the identity
    inv = at.inverse()
    back = inv.apply_transform(np.column_stack([x, y]))
    px, py = truth(x, y)
    assert np.hypot(back[:, 0] - px, back[:, 1] - py).max() < 0.02
    assert inv.rotation == pytest.approx(TRUTH_A["rotation_deg"], abs=0.01)
    assert inv.scale == pytest.approx(TRUTH_A["scale"], abs=2e-4)
    there_and_back = inv.apply_transform(at.apply_transform(np.column_stack([x, y])))
    np.testing.assert_allclose(there_and_back, np.column_stack([x, y]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(at.inverse().inverse().matrix_form()[0], lin, rtol=0, atol=1e-12)

    # spalipy's constructor from v is the similarity those four numbers describe
    sim = type(at)(at.v)
    np.testing.assert_allclose(sim.matrix_form()[0], [[a, -b], [b, a]], rtol=0, atol=1e-15)
    assert np.hypot(*(sim.apply_transform(np.column_stack([x, y])) - pts).T).max() < 0.05


def test_full_transform_goes_both_ways(sky, aligned_a):
    x, y = grid(SHAPE)
    fwd = aligned_a.full_transform(np.column_stack([x, y]), inverse=False)
    ex, ey = sky.truth_a.generate(x, y)
    assert np.hypot(fwd[:, 0] - ex, fwd[:, 1] - ey).max() < 0.02
    back = aligned_a.full_transform(fwd, inverse=True)
    np.testing.assert_allclose(back, np.column_stack([x, y]), rtol=0, atol=1e-6)


def test_the_steps_in_their_documented_order_are_align(sky, aligned_a):
    s = Spalipy(sky.source_a, template_data=sky.template)
    assert s.affine_transform is None and s.aligned_data is None
    with pytest.raises(RuntimeError):
        s.transform_data()  # nothing fitted yet

    s.make_source_quadlist()
    coo = s.source_coo
    assert isinstance(s.source_quadlist, list) and sum(len(sub) for sub in s.source_quadlist) > 0
    for sub in s.source_quadlist:
        for corners, code in sub[:20]:
            assert corners.shape == (4, 2) and np.asarray(code).ndim == 1
            # every corner is one of the source detections
            assert all(np.hypot(*(coo - c).T).min() < 1e-9 for c in corners)
    s.make_template_quadlist()
    assert len(s.template_quadlist) > 0 and all(len(q) == 2 for q in s.template_quadlist)

    s.fit_affine_transform()
    assert s.alignment_failed is False
    assert pull_error(uses_model(s), sky.truth_a, SHAPE) < 0.02
    s.fit_spline_transform()
    s.transform_data()

    np.testing.assert_array_equal(s.aligned_data, aligned_a.aligned_data)
    np.testing.assert_array_equal(s.aligned_mask, aligned_a.aligned_mask)
    np.testing.assert_array_equal(np.asarray(s.affine_transform), np.asarray(aligned_a.affine_transform))


def test_a_distorted_field_gets_a_spline_that_follows_the_truth():
    p = make_star_pair((384, 384), 500, rotation_deg=1.5, shift=(3.0, 2.0), distortion_px=2.0, seed=7)
    flat = Spalipy(p.source, template_data=p.template, spline_order=0)
    flat.align()
    s = Spalipy(p.source, template_data=p.template)
    s.align()
    assert flat.spline_transform is None and s.spline_transform is not None
    err_flat = pull_error(uses_model(flat), p.truth, (384, 384))
    err = pull_error(uses_model(s), p.truth, (384, 384))
    assert err < 0.05 and err_flat > 5 * err
    # the fit states its predicted model error (transform_stats, as every alignment's quality block), and it
    # tells the affine-only fit of a distorted field from the one that follows it
    pe_flat, pe = flat.transform_stats()["predicted_error_px"], s.transform_stats()["predicted_error_px"]
    assert 1 / 3 <= err / pe["max"] <= 3 and 1 / 3 <= err_flat / pe_flat["max"] <= 3, (err, pe, err_flat, pe_flat)

    # affine inverse + the spline's offsets is the whole pull map, and it is the truth
    x, y = grid((384, 384))
    xy = np.column_stack([x, y])
    src = s.affine_transform.inverse().apply_transform(xy) + s.spline_transform(xy, relative=True)
    tx, ty = p.truth(x, y)
    keep = inside(tx, ty, (384, 384))
    assert np.hypot(src[:, 0] - tx, src[:, 1] - ty)[keep].max() < 0.05
    np.testing.assert_allclose(s.spline_transform(xy), xy + s.spline_transform(xy, relative=True), atol=1e-9)
    off = s.spline_transform(xy, relative=True)
    np.testing.assert_allclose(s.sbs_x.ev(x, y), off[:, 0], atol=1e-9)
    np.testing.assert_allclose(s.sbs_y.ev(x, y), off[:, 1], atol=1e-9)


# ---------------------------------------------------------------------------------- list mode
@pytest.mark.parametrize("threads", [None, 2])
def test_list_mode_keeps_going_past_an_entry_that_cannot_align(sky, aligned_a, few_stars, threads):
    s = Spalipy([sky.source_a, few_stars, sky.source_b], template_data=sky.template,
                output_shape=[None, None, (200, 240)], thread_pool_max=threads)
    s.align()
    assert s.alignment_failed == [False, True, False]
    assert s.affine_transform[1] is None and s.aligned_data[1] is None and s.aligned_mask[1] is None
    assert s.transform_stats()[1] is None
    assert [None if a is None else a.shape for a in s.aligned_data] == [SHAPE, None, (200, 240)]

    assert pull_error(uses_model(s, 0), sky.truth_a, SHAPE) < 0.02
    assert pull_error(uses_model(s, 2), sky.truth_b, (200, 240), source_shape=SHAPE) < 0.02
    assert s.affine_transform[0].rotation == pytest.approx(-TRUTH_A["rotation_deg"], abs=0.01)
    assert s.affine_transform[2].rotation == pytest.approx(-TRUTH_B["rotation_deg"], abs=0.01)
    assert s.affine_transform[2].scale == pytest.approx(1.0 / TRUTH_B["scale"], abs=2e-4)
    # an entry of a list comes out as it does alone
    np.testing.assert_array_equal(s.aligned_data[0], aligned_a.aligned_data)
    with pytest.raises(RuntimeError):
        s.full_transform(np.zeros((1, 2)), entry=1)


def test_a_lone_entry_that_cannot_align_raises_and_says_so(sky, few_stars):
    s = Spalipy(few_stars, template_data=sky.template)
    with pytest.raises(RuntimeError):
        s.align()
    assert s.alignment_failed is True and s.affine_transform is None


def test_a_blank_entry_is_refused_when_the_detections_are_filtered(sky):
    blank = np.full(SHAPE, 100.0)
    with pytest.raises(ValueError, match="entry 1"):
        Spalipy([sky.source_a, blank], template_data=sky.template)


# ---------------------------------------------------------------------------------- masks
def test_a_bitmask_is_carried_and_its_pixels_are_not_used(sky):
    y0, y1, x0, x1 = 100, 160, 60, 140  # a masked block in the source, bit 4
    src = sky.source_a.copy()
    src[y0:y1, x0:x1] = 5e4  # junk under the mask: it must not be detected nor resampled
    mask = np.zeros(SHAPE, np.uint16)
    mask[y0:y1, x0:x1] = 4
    rng = np.random.default_rng(3)
    hot = np.column_stack([rng.integers(200, 300, 25), rng.integers(200, 300, 25)])  # (row, col), bit 2
    mask[hot[:, 0], hot[:, 1]] = 2
    s = Spalipy(src, source_mask=mask, template_data=sky.template, cval=-1.0, cval_mask=128)
    s.align()

    assert pull_error(uses_model(s), sky.truth_a, SHAPE) < 0.02
    det = s.source_det
    assert not np.any(inside(np.asarray(det["x"]) - x0, np.asarray(det["y"]) - y0, (y1 - y0, x1 - x0), -2.0))

    m = s.aligned_mask
    assert m.dtype == np.uint16 and m.shape == SHAPE
    assert set(np.unique(m)) <= {0, 2, 4, 128} and {2, 4, 128} <= set(np.unique(m))
    gx, gy = np.meshgrid(np.arange(SHAPE[1], dtype=float), np.arange(SHAPE[0], dtype=float))
    tx, ty = sky.truth_a(gx, gy)
    in_block = (tx > x0 + 1) & (tx < x1 - 2) & (ty > y0 + 1) & (ty < y1 - 2)
    near_block = (tx > x0 - 2) & (tx < x1 + 1) & (ty > y0 - 2) & (ty < y1 + 1)
    assert (m[in_block] == 4).all() and not (m[~near_block] == 4).any()
    off = ~inside(tx, ty, SHAPE, -1.0)
    assert (m[off] == 128).all() and (s.aligned_data[off] == -1.0).all()
    # each hot pixel lands where the truth sends it (nearest neighbour, so within a pixel)
    hx, hy = sky.truth_a.generate(hot[:, 1].astype(float), hot[:, 0].astype(float))
    for x, y in zip(hx, hy):
        ix, iy = int(round(x)), int(round(y))
        assert (m[iy - 1:iy + 2, ix - 1:ix + 2] == 2).any()

    # no output pixel reads the junk: over the block it is cval, and nowhere near 5e4
    assert (s.aligned_data[in_block] == -1.0).all()
    assert np.nanmax(s.aligned_data[~near_block]) < 4e4


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_a_64_bit_bitmask_keeps_every_bit(sky, dtype):
    """Bits above 2**53 and the lowest bit together: values resampled through float64 would lose bit 0."""
    mask = np.zeros(SHAPE, dtype)
    big = dtype((1 << 60) | (1 << 33) | 1)
    mask[150:170, 150:170] = big
    s = Spalipy(sky.source_a, source_mask=mask, template_data=sky.template, cval_mask=0)
    s.align()
    m = s.aligned_mask
    assert m.dtype == mask.dtype
    assert set(np.unique(m)) == {0, big}


# ---------------------------------------------------------------------------------- output grids
def test_preserve_footprints_grows_the_grid_to_hold_the_whole_source(sky, aligned_a):
    s = Spalipy(sky.source_a, template_data=sky.template, preserve_footprints=True)
    s.align()
    shape = s.aligned_data.shape
    assert s.output_shape == shape and shape[0] > SHAPE[0] and shape[1] > SHAPE[1]

    # the template sits unchanged inside the grown grid; its corner gives the offset
    rows = np.flatnonzero(np.isfinite(s.template_data).any(axis=1))
    cols = np.flatnonzero(np.isfinite(s.template_data).any(axis=0))
    ay, ax = int(rows[0]), int(cols[0])
    assert rows.size == SHAPE[0] and cols.size == SHAPE[1]
    np.testing.assert_array_equal(s.template_data[ay:ay + SHAPE[0], ax:ax + SHAPE[1]], sky.template)

    # every source corner lands on the grid (spalipy's extents are truncated to whole pixels, which may
    # leave a corner up to 2 px beyond it), and the model is the truth shifted by that offset
    cx, cy = sky.truth_a.generate(np.array([0.0, 319.0, 0.0, 319.0]), np.array([0.0, 0.0, 319.0, 319.0]))
    assert inside(cx + ax, cy + ay, shape, -2.0).all()
    assert pull_error(uses_model(s), lambda x, y: sky.truth_a(x - ax, y - ay), shape, source_shape=SHAPE) < 0.02
    valid = np.isfinite(s.aligned_data).sum()
    assert valid == pytest.approx(SHAPE[0] * SHAPE[1] / TRUTH_A["scale"] ** 2, rel=0.02)
    assert valid > np.isfinite(aligned_a.aligned_data).sum()
    # inside the template's window the pixels are those of the plain alignment
    window = (slice(ay, ay + SHAPE[0]), slice(ax, ax + SHAPE[1]))
    np.testing.assert_array_equal(s.aligned_data[window], aligned_a.aligned_data)


def test_output_shape_sets_the_grid_with_the_template_origin(sky, aligned_a):
    shape = (256, 352)  # fewer rows, more columns than the template
    s = Spalipy(sky.source_a, template_data=sky.template, output_shape=shape)
    s.align()
    assert s.output_shape == shape and s.aligned_data.shape == shape and s.aligned_mask.shape == shape
    assert pull_error(uses_model(s), sky.truth_a, shape, source_shape=SHAPE) < 0.02
    np.testing.assert_array_equal(s.aligned_data[:, :SHAPE[1]], aligned_a.aligned_data[:shape[0]])
    gx, gy = np.meshgrid(np.arange(SHAPE[1], shape[1], dtype=float), np.arange(shape[0], dtype=float))
    tx, ty = sky.truth_a(gx, gy)  # beyond the template, the source still has pixels to give
    assert np.isfinite(s.aligned_data[:, SHAPE[1]:][inside(tx, ty, SHAPE, 3.0)]).all()


# ---------------------------------------------------------------------------------- memory
def _deleted_maps(folder):
    """Lines of /proc/self/maps naming a deleted file in ``folder``."""
    text = Path("/proc/self/maps").read_text()
    return [ln for ln in text.splitlines() if str(folder) in ln and "(deleted)" in ln]


def test_memmap_mode_gives_the_same_pixels_and_leaves_no_files(sky, aligned_a, tmp_path):
    data_file = tmp_path / "source.f64"
    mm = np.memmap(data_file, mode="w+", dtype=np.float64, shape=SHAPE)
    mm[...] = sky.source_a
    mm.flush()
    del mm
    src = np.memmap(data_file, mode="r", dtype=np.float64, shape=SHAPE)
    temp = tmp_path / "temp"
    temp.mkdir()

    s = Spalipy(src, template_data=sky.template, use_memmap=True, temp_dir=temp)
    s.align()
    out, mask = s.aligned_data, s.aligned_mask
    assert isinstance(out, np.memmap) and isinstance(mask, np.memmap)
    np.testing.assert_array_equal(out, aligned_a.aligned_data)
    np.testing.assert_array_equal(mask, aligned_a.aligned_mask)
    np.testing.assert_array_equal(np.fromfile(data_file, np.float64).reshape(SHAPE), sky.source_a)
    assert list(temp.iterdir()) == []  # the backing files are unlinked as soon as they are mapped

    if Path("/proc/self/maps").exists():  # and their storage goes with the last reference
        assert len(_deleted_maps(temp)) == 2
        del s, out, mask
        gc.collect()
        assert _deleted_maps(temp) == []
    with pytest.raises(ValueError):
        Spalipy(sky.source_a, template_data=sky.template, use_memmap=True, temp_dir=tmp_path / "absent")


# ---------------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("dtype", ["int32", "uint16", "float32", ">f8", ">f4", ">i2"])
def test_any_numeric_dtype_is_read_as_native_float64(sky, dtype):
    dt = np.dtype(dtype)

    def as_dtype(img):
        if dt.kind in "iu":
            img = np.clip(np.round(img), np.iinfo(dt).min, np.iinfo(dt).max)
        return img.astype(dt)

    src, tmpl = as_dtype(sky.source_a), as_dtype(sky.template)
    before = src.copy()
    s = Spalipy(src, template_data=tmpl)
    assert s.source_data.dtype == np.float64 and s.source_data.dtype.isnative
    assert s.template_data.dtype == np.float64 and s.template_data.dtype.isnative
    np.testing.assert_array_equal(s.source_data, src.astype(np.float64))
    s.align()
    np.testing.assert_array_equal(src, before)  # the caller's array is left alone
    assert pull_error(uses_model(s), sky.truth_a, SHAPE) < 0.03


def _sep_table(data):
    """spalipy's README recipe: ``sep.extract`` into an astropy Table, plus a ``fwhm`` column."""
    import sep
    from astropy.table import Table

    data = np.ascontiguousarray(data, dtype=np.float64)
    bkg = sep.Background(data)
    t = Table(sep.extract(data - bkg.back(), 5.0, err=bkg.globalrms))
    t["fwhm"] = 2.0 * np.sqrt(np.log(2.0) * (t["a"] ** 2 + t["b"] ** 2))
    return t


def test_detection_tables_replace_detection(sky):
    from astropy.table import Table, vstack

    xy, flux = sky.positions(Truth(SHAPE), "template")  # exact positions on the template
    good = Table({"x": xy[:, 0], "y": xy[:, 1], "flux": flux, "fwhm": np.full(len(xy), 3.0),
                  "flag": np.zeros(len(xy), int)})
    rng = np.random.default_rng(8)
    n = 40
    junk = Table({"x": rng.uniform(0, 319, n), "y": rng.uniform(0, 319, n), "flux": np.full(n, 1e7),
                  "fwhm": np.where(np.arange(n) % 2 == 0, 0.5, 3.0), "flag": np.where(np.arange(n) % 2 == 0, 0, 4)})
    template_det = vstack([good, junk])
    source_det = _sep_table(sky.source_a)
    source_det.sort("flux", reverse=True)
    source_det = source_det[:150]  # fewer than the class would find itself

    s = Spalipy(sky.source_a, source_det=source_det, template_det=template_det, bad_flag_bits=4, min_fwhm=1.0)
    assert len(s.source_det) <= 150 and np.isin(np.asarray(s.source_det["x"]), np.asarray(source_det["x"])).all()
    kept = s.template_det
    assert len(kept) <= len(good)
    assert not (np.asarray(kept["flag"]) & 4).any() and (np.asarray(kept["fwhm"]) >= 1.0).all()
    assert list(kept.colnames[:5]) == ["x", "y", "flux", "fwhm", "flag"]
    s.align()
    assert s.template_data is None and s.aligned_data.shape == SHAPE  # the grid comes from the source
    assert pull_error(uses_model(s), sky.truth_a, SHAPE) < 0.03


def _write_sextractor(path, xy, flux):
    """An ASCII_HEAD SExtractor catalogue (1-based X/Y_IMAGE) of the given 0-based positions."""
    names = ["NUMBER", "X_IMAGE", "Y_IMAGE", "FLUX_AUTO", "FWHM_IMAGE", "FLAGS"]
    lines = [f"# {k:3d} {name}" for k, name in enumerate(names, start=1)]
    for k, ((x, y), f) in enumerate(zip(xy, flux), start=1):
        lines.append(f"{k} {x + 1.0:.5f} {y + 1.0:.5f} {f:.3f} 3.0 0")
    Path(path).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("template_from", ["catalogue", "image"])
def test_sextractor_catalogues_are_one_based(sky, tmp_path, template_from):
    from astropy.io import fits

    from rastalign import estimate_fits

    src_fits, tmpl_fits = tmp_path / "source.fits", tmp_path / "template.fits"
    fits.writeto(src_fits, sky.source_a)
    fits.writeto(tmpl_fits, sky.template)
    src_cat, tmpl_cat = tmp_path / "source.cat", tmp_path / "template.cat"
    _write_sextractor(src_cat, *sky.positions(sky.truth_a, "source"))
    _write_sextractor(tmpl_cat, *sky.positions(Truth(SHAPE), "template"))

    extra = {"template_cat": tmpl_cat} if template_from == "catalogue" else {}
    model, evidence = estimate_fits(src_fits, tmpl_fits, source_cat=src_cat, **extra)
    assert evidence["stats"]["n_matched"] >= 100
    # exact positions on both sides fit to a hair; an image's detections to their centroid noise
    assert pull_error(model, sky.truth_a, SHAPE) < (0.005 if extra else 0.03)
