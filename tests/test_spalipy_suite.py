"""spalipy's own test suite, run against ``rastalign.Spalipy``.

Adapted from ``test/test_spalipy.py`` of spalipy (https://github.com/GOTO-OBS/spalipy,
GPL-3.0-or-later, by the GOTO-OBS authors): the same synthetic images (same random draws,
so the same pixels), the same calls and the same assertions, with the import pointed at
rastalign. The image generator is re-implemented here (spalipy evaluates astropy's
Gaussian2D model set; the formula below is the same and gives identical pixels) and
spalipy's ``_memmap_create_temp`` is rastalign's ``memmap_temp``.

Where spalipy asserts its own fitted numbers, rastalign's fit differs by its better
accuracy. spalipy's expected transforms are themselves off the exact truth (the synthetic
stars are placed by a known similarity) by up to 1.8e-1 px in shift and 4.7e-4 in the matrix
terms; each such assertion is loosened only to that size and, beside it, the test asserts that
rastalign's transform is at least as close to the truth as spalipy's (``closer_than_spalipy``).
"""
import os
import unittest

import numpy as np
from astropy.table import Table

from rastalign import Spalipy
from rastalign.astro.spalipy_steps import memmap_temp as _memmap_create_temp

SHAPE = (380, 400)  # size of images used for testing
BUFFER = 50  # buffer for creating sources outside shape, to allow for transformations


def _gaussian2d(x, y, amplitude, x_mean, y_mean, x_stddev, y_stddev, theta):
    """astropy.modeling.models.Gaussian2D, evaluated."""
    cos2, sin2, sin2t = np.cos(theta) ** 2, np.sin(theta) ** 2, np.sin(2.0 * theta)
    a = 0.5 * (cos2 / x_stddev ** 2 + sin2 / y_stddev ** 2)
    b = 0.5 * (sin2t / x_stddev ** 2 - sin2t / y_stddev ** 2)
    c = 0.5 * (sin2 / x_stddev ** 2 + cos2 / y_stddev ** 2)
    dx, dy = x - x_mean, y - y_mean
    return amplitude * np.exp(-(a * dx ** 2 + b * dx * dy + c * dy ** 2))


def generate_image(translate=(0, 0), rotate=0.0, scale=1.0, num_dets=180, seed=0):
    """spalipy's simulated astronomical image (same draws, same pixels) and its table of true positions."""
    rng = np.random.default_rng(seed)
    rng_source = np.random.default_rng(42)  # fixed: source positions and fluxes agree between images
    poisson_mean, gauss_sigma = 25, 5
    poisson_noise = rng.poisson(lam=poisson_mean, size=SHAPE)
    gaussian_noise = rng.normal(loc=0, scale=gauss_sigma, size=SHAPE)
    amplitude = rng_source.uniform(low=poisson_mean + 100 * gauss_sigma, high=poisson_mean + 200 * gauss_sigma,
                                   size=num_dets)
    x_mean = rng_source.uniform(-BUFFER, SHAPE[0] + BUFFER, size=num_dets)
    y_mean = rng_source.uniform(-BUFFER, SHAPE[1] + BUFFER, size=num_dets)
    x_stddev = (rng_source.rayleigh(scale=0.1, size=num_dets) + 2) * scale
    y_stddev = (rng_source.rayleigh(scale=0.1, size=num_dets) + 2) * scale
    theta = np.radians(rng_source.uniform(low=0, high=360, size=num_dets))
    if translate != (0, 0) or rotate != 0 or scale != 1:
        c, s = np.cos(np.radians(rotate)), np.sin(np.radians(rotate))
        m = scale * np.array([[c, -s, translate[0]], [s, c, translate[1]]])
        x_mid, y_mid = SHAPE[0] / 2, SHAPE[1] / 2  # spalipy's centre of rotation and scale
        x_mean, y_mean = m @ np.vstack([x_mean - x_mid, y_mean - y_mid, np.ones(num_dets)])
        x_mean, y_mean = x_mean + x_mid, y_mean + y_mid
    y, x = np.mgrid[0:SHAPE[0], 0:SHAPE[1]].astype(float)
    signal = np.zeros(SHAPE)
    for k in range(num_dets):
        signal += _gaussian2d(x, y, amplitude[k], x_mean[k], y_mean[k], x_stddev[k], y_stddev[k], theta[k])
    det_table = Table(dict(x=x_mean, y=y_mean, flux=amplitude, fwhm=x_stddev * 2.355, flag=[0] * num_dets))
    return poisson_noise + gaussian_noise + signal, det_table


def generate_mask(bits=4, num_masked=500, seed=0):
    """spalipy's random mask with multiple bit values."""
    rng = np.random.default_rng(seed)
    x_mask = rng.integers(low=0, high=SHAPE[0], size=num_masked)
    y_mask = rng.integers(low=0, high=SHAPE[1], size=num_masked)
    mask = np.zeros(SHAPE, int)
    mask[x_mask, y_mask] = 1
    for i in range(1, bits):
        x_mask_bit = rng.choice(x_mask, size=num_masked // bits, replace=False)
        y_mask_bit = rng.choice(y_mask, size=num_masked // bits, replace=False)
        mask[x_mask_bit, y_mask_bit] |= 1 << i
    return mask


def true_similarity(source_dets, template_dets):
    """spalipy's v = (a, b, c, d) of the exact source -> template similarity that placed the stars."""
    s = np.column_stack([source_dets["x"], source_dets["y"]])
    t = np.column_stack([template_dets["x"], template_dets["y"]])
    a = np.zeros((2 * len(s), 4))
    a[::2, :2] = np.column_stack([s[:, 0], -s[:, 1]])
    a[1::2, :2] = np.column_stack([s[:, 1], s[:, 0]])
    a[::2, 2] = a[1::2, 3] = 1.0
    v, res, *_ = np.linalg.lstsq(a, t.ravel(), rcond=None)
    assert res[0] < 1e-16  # exact
    return v


def mapping_error(v_or_transform, v_true, shape=SHAPE):
    """Largest |transform - truth| (template px) over the source frame."""
    y, x = np.mgrid[0:shape[0]:10, 0:shape[1]:10].reshape(2, -1).astype(float)
    xy = np.column_stack([x, y])

    def apply(v):
        return np.column_stack([v[0] * x - v[1] * y + v[2], v[1] * x + v[0] * y + v[3]])

    got = v_or_transform.apply_transform(xy) if hasattr(v_or_transform, "apply_transform") else apply(v_or_transform)
    return float(np.hypot(*(got - apply(v_true)).T).max())


def nearest_sum(mask, v, shape=SHAPE):
    """Sum of ``mask`` resampled by nearest neighbour through the similarity ``v`` (source -> template), with
    scipy as spalipy does it: the statistic spalipy's ``test_mask_align`` asserts, here for any ``v``."""
    from scipy import ndimage

    a, b, c, d = v
    inv = np.linalg.inv([[a, -b, c], [b, a, d], [0, 0, 1]])  # template (x, y) -> source (x, y)
    rc = inv[:2, :2][::-1, ::-1]  # the same in (row, col) order
    return int(ndimage.affine_transform(mask, rc, offset=inv[1::-1, 2], order=0, output_shape=shape, cval=0).sum())


# Loosened tolerances (spalipy's np.allclose default is rtol=1e-5, atol=1e-8): spalipy's own expected
# transforms are off the truth by up to 4.7e-4 in the matrix terms and 0.18 px in the shifts; rastalign's
# are off by <= 2e-5 and 0.01 px, so they differ from spalipy's by up to 4.9e-4 and 0.192 px.
V_ATOL = np.array([5e-4, 5e-4, 0.2, 0.2])  # a, b (matrix terms); c, d (shifts, px)


def spalipy_quad_count(det, edge_buffer, min_quad_sep, n_quad_det=20, shape=SHAPE):
    """spalipy's quad rule, written out: combinations of 4 of the ``n_quad_det`` brightest detections
    inside the edge buffer whose pairwise distances all exceed ``min_quad_sep``."""
    import itertools

    from scipy.spatial.distance import pdist

    xy = np.column_stack([det["x"], det["y"]])[np.argsort(-np.asarray(det["flux"]), kind="stable")]
    ok = ((xy[:, 0] >= edge_buffer) & (xy[:, 0] <= shape[1] - edge_buffer) & (xy[:, 1] >= edge_buffer)
          & (xy[:, 1] <= shape[0] - edge_buffer))
    xy = xy[ok][:n_quad_det]
    return sum(pdist(xy[list(q)]).min() > min_quad_sep for q in itertools.combinations(range(len(xy)), 4))


class TestSpalipy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template_data, cls.template_dets = generate_image(seed=0)
        cls.source_data, cls.source_dets = generate_image(translate=(20, -20), rotate=60, scale=1.2, seed=1)
        cls.source_data_footprint, cls.source_dets_footprint = generate_image(
            translate=(3.4, -12.5), rotate=49.2, scale=1.0, seed=1)
        source_mask = generate_mask()
        source_mask[100:105, 330:335] = 16
        cls.source_mask = source_mask

        cls.expected_affine_transform_simple = np.array([0.41713655, -0.72205574, -26.36528175, 281.10807233])
        cls.expected_affine_transform_footprint = np.array([0.65375097, -0.7569395, -0.35889457, 301.85752249])
        cls.expected_footprint_shape = (549, 547)
        # the truth (not in spalipy's suite): the similarity that placed the stars; the footprint one is
        # shifted by spalipy's anchor (78, 78) of the preserved-footprint grid
        cls.true_simple = true_similarity(cls.source_dets, cls.template_dets)
        cls.true_footprint = true_similarity(cls.source_dets_footprint, cls.template_dets) + [0, 0, 78, 78]

    def assert_v(self, transform, expected, truth):
        """spalipy's ``np.allclose(v, expected)``, loosened (see V_RTOL, V_ATOL), plus: closer to the truth."""
        assert np.allclose(transform.v, expected, atol=V_ATOL), (transform.v, expected)
        ours, theirs = mapping_error(transform, truth), mapping_error(expected, truth)
        assert ours <= theirs and ours < 0.05, (ours, theirs)

    def test_simple_align(self):
        """Test simple alignment produces expected affine transformation."""
        sp = Spalipy(self.source_data, template_data=self.template_data, min_n_match=10, sub_tile=1, spline_order=0)
        sp.align()
        assert sp.aligned_data.shape == SHAPE
        self.assert_v(sp.affine_transform, self.expected_affine_transform_simple, self.true_simple)

    def test_spline_align(self):
        """Test that spline alignment is performed correctly"""
        sp = Spalipy(self.source_data, template_data=self.template_data, min_n_match=10, sub_tile=1, spline_order=1)
        sp.align()
        assert sp.aligned_data.shape == SHAPE
        # Inclusion of a spline order should not affect the initial affine transform
        self.assert_v(sp.affine_transform, self.expected_affine_transform_simple, self.true_simple)

    def test_mask_align(self):
        """Test inclusion of mask does not affect alignment and produces
        expected mask, distilled to a sum."""
        assert np.sum(self.source_mask) == 2646
        sp = Spalipy(self.source_data, source_mask=self.source_mask, template_data=self.template_data,
                     min_n_match=10, sub_tile=1, spline_order=0)
        sp.align()
        self.assert_v(sp.affine_transform, self.expected_affine_transform_simple, self.true_simple)
        # spalipy: == 1839. The sum of a sparse mask sampled by nearest neighbour moves by tens for 0.02 px
        # changes of the transform; sampled through the exact transform it is 1886, so spalipy's 1839 is 47 off
        # the truth. Ours must be closer to the truth than spalipy's, so within 2 * 47 = 94 of 1839 (was 0).
        got, truth = int(np.sum(sp.aligned_mask)), nearest_sum(self.source_mask, self.true_simple)
        assert abs(got - truth) <= abs(1839 - truth), (got, truth)
        assert abs(got - 1839) <= 2 * abs(1839 - truth), got
        assert sp.aligned_mask.dtype == self.source_mask.dtype  # the bitmask is carried, values and dtype
        assert set(np.unique(sp.aligned_mask)) <= set(np.unique(self.source_mask))

    def test_multi_simple_align(self):
        """Test passing multiple arrays to align produces expected affine transformations"""
        sp = Spalipy([self.source_data, self.source_data, self.source_data],
                     source_mask=[self.source_mask, self.source_mask, self.source_mask],
                     template_data=self.template_data, min_n_match=10, sub_tile=1, spline_order=0)
        sp.align()
        assert isinstance(sp.aligned_data, list)
        for affine_transform in sp.affine_transform:
            self.assert_v(affine_transform, self.expected_affine_transform_simple, self.true_simple)

    def test_quad_edge_buffer(self):
        sp = Spalipy(self.source_data, template_data=self.template_data, min_n_match=10, sub_tile=1, spline_order=0,
                     quad_edge_buffer=max(SHAPE))
        with self.assertRaises(ValueError):
            sp.make_source_quadlist()
        with self.assertRaises(ValueError):
            sp.make_template_quadlist()
        sp = Spalipy(self.source_data, template_data=self.template_data, min_n_match=10, sub_tile=1, spline_order=0,
                     quad_edge_buffer=100)
        sp.align()
        # spalipy: == 486, the quads of spalipy's 15 detections inside the 100 px buffer. One of them is a blend of
        # two stars 7.7 px apart (its centroid 2.9 px from either) that rastalign deblends and drops as crowded;
        # the quads of the other 14 are 403 (the 83 with the blend are gone). Asserted: the quadlist is exactly
        # spalipy's quad rule applied to rastalign's detections, and at most spalipy's 486.
        assert len(sp.source_quadlist[0]) == spalipy_quad_count(sp.source_det, 100, sp.min_quad_sep) <= 486
        assert len(sp.source_quadlist[0]) >= 486 - 83
        assert len(sp.template_quadlist[0]) == 2
        self.assert_v(sp.affine_transform, self.expected_affine_transform_simple, self.true_simple)

    def test_preserve_footprints(self):
        sp = Spalipy(self.source_data_footprint, template_data=self.template_data, min_n_match=10, sub_tile=1,
                     spline_order=0, preserve_footprints=True)
        sp.align()
        self.assert_v(sp.affine_transform, self.expected_affine_transform_footprint, self.true_footprint)
        assert sp.template_data.shape == self.expected_footprint_shape
        assert sp.aligned_data.shape == self.expected_footprint_shape
        # preserve_footprints should raise error when not providing template data
        with self.assertRaises(ValueError):
            _ = Spalipy(self.source_data_footprint, template_det=sp.template_det, min_n_match=10, sub_tile=1,
                        spline_order=0, preserve_footprints=True)

    def test_convert_integer_to_float64(self):
        sp = Spalipy(self.source_data.astype(np.int16), template_data=self.template_data.astype(np.int16),
                     min_n_match=10, sub_tile=1, spline_order=0)
        assert sp.source_data.dtype == np.float64
        assert sp.template_data.dtype == np.float64

    def test_convert_float32_to_float64(self):
        sp = Spalipy(self.source_data.astype(np.float32), template_data=self.template_data.astype(np.float32),
                     min_n_match=10, sub_tile=1, spline_order=0)
        assert sp.source_data.dtype == np.float64
        assert sp.template_data.dtype == np.float64

    def test_memmap_create_temp(self):
        data = np.random.random((100, 100))
        memmap = _memmap_create_temp(data)
        assert isinstance(memmap, np.memmap)
        assert not os.path.exists(memmap.filename)  # file should be unlinked
        assert np.array_equal(memmap, data)

    def test_memmap_align(self):
        source_memmap = _memmap_create_temp(self.source_data)
        template_memmap = _memmap_create_temp(self.template_data)
        sp = Spalipy(source_memmap, template_data=template_memmap, min_n_match=10, sub_tile=1, spline_order=0,
                     use_memmap=True)
        sp.align()
        assert sp.aligned_data.shape == SHAPE
        self.assert_v(sp.affine_transform, self.expected_affine_transform_simple, self.true_simple)
        assert isinstance(sp.template_data, np.memmap)
        assert isinstance(sp.aligned_data, np.memmap)

    def test_memmap_footprint_align(self):
        source_memmap = _memmap_create_temp(self.source_data_footprint)
        template_memmap = _memmap_create_temp(self.template_data)
        sp = Spalipy(source_memmap, template_data=template_memmap, min_n_match=10, sub_tile=1, spline_order=0,
                     preserve_footprints=True, use_memmap=True)
        sp.align()
        self.assert_v(sp.affine_transform, self.expected_affine_transform_footprint, self.true_footprint)
        assert sp.template_data.shape == self.expected_footprint_shape
        assert sp.aligned_data.shape == self.expected_footprint_shape
        assert isinstance(sp.template_data, np.ndarray)  # np.pad ensures this becomes an array
        assert isinstance(sp.aligned_data, np.memmap)


# --------------------------------------------------------------------------------------------------------
# Beyond spalipy's suite: the API it exercises only lightly, checked against known truths.
import pytest  # noqa: E402

from rastalign.astro.spalipy import AffineTransform  # noqa: E402
from rastalign.astro.spalipy_steps import detect_frame, memmap_release  # noqa: E402
from rastalign.testing_stars import make_star_pair  # noqa: E402


def test_affine_transform_is_exact_for_a_full_affine():
    m = np.array([[1.01, 0.02, 5.0], [-0.03, 0.98, -7.0]])  # shear and anisotropic scale: not a similarity
    t = AffineTransform.from_matrix(m, anchor=(200.0, 150.0))
    pts = np.array([[0.0, 0.0], [399.0, 379.0], [200.0, 150.0], [10.5, 300.25]])
    want = pts @ m[:, :2].T + m[:, 2]
    assert np.allclose(t.apply_transform(pts), want, atol=1e-12)
    assert np.allclose(t.apply_transform(pts.T.reshape(2, 2, 2)), want.T.reshape(2, 2, 2), atol=1e-12)  # (2, ...)
    assert np.allclose(t.apply_transform(pts[1]), want[1], atol=1e-12)  # one (x, y) pair, as spalipy
    assert np.allclose(t.inverse().apply_transform(want), pts, atol=1e-9)
    lin, off = t.matrix_form()
    assert np.array_equal(lin, m[:, :2]) and np.array_equal(off, m[:, 2])
    assert np.array_equal(np.asarray(t), m) and not t.is_similarity
    # v: the nearest similarity, exact at the anchor, and the best rotation + isotropic scale
    a, b, c, d = t.v
    assert np.allclose([a * 200 - b * 150 + c, b * 200 + a * 150 + d], want[2], atol=1e-9)
    assert np.isclose(a, (1.01 + 0.98) / 2) and np.isclose(b, (-0.03 - 0.02) / 2)
    # a similarity is described exactly by v, as spalipy's AffineTransform(v)
    s = AffineTransform([0.5, np.sqrt(3) / 2, 3.0, -4.0])
    assert s.is_similarity and np.isclose(s.scale, 1.0) and np.isclose(s.rotation, 60.0)
    r = np.array([[0.5, -np.sqrt(3) / 2], [np.sqrt(3) / 2, 0.5]])
    inv = s.inverse()  # rotation by -60 deg, shift -R^T (3, -4)
    assert inv.is_similarity and np.isclose(inv.rotation, -60.0)
    assert np.allclose(inv.v, [0.5, -np.sqrt(3) / 2, *(-r.T @ [3.0, -4.0])])
    assert np.allclose(s.inverse().inverse().v, s.v)


def test_spline_transform_and_full_transform_agree_with_the_model():
    p = make_star_pair((512, 512), 400, rotation_deg=5.0, scale=1.02, shift=(4.0, -3.0), distortion_px=2.0, seed=2)
    sp = Spalipy(p.source, template_data=p.template, min_n_match=30, spline_order=3)
    sp.align()
    assert sp.spline_transform is not None and sp.sbs_x is not None
    g = np.mgrid[0:512:32, 0:512:32].reshape(2, -1)[::-1].T.astype(float)  # (N, 2) template (x, y)
    src = sp.full_transform(g)
    # spalipy's decomposition, exact here: source = inverse affine + spline offsets
    parts = sp.affine_transform.inverse().apply_transform(g) + sp.spline_transform(g, relative=True)
    assert np.allclose(src, parts, atol=1e-9)
    assert np.allclose(sp.spline_transform(g), g + sp.spline_transform(g, relative=True))
    assert np.allclose(sp.sbs_x.ev(g[:, 0], g[:, 1]), sp.spline_transform(g, relative=True)[:, 0])
    tx, ty = p.truth(g[:, 0], g[:, 1])
    inside = (tx > 8) & (tx < 503) & (ty > 8) & (ty < 503)
    err = np.hypot(src[:, 0] - tx, src[:, 1] - ty)[inside]
    assert np.sqrt(np.mean(err ** 2)) < 0.03, err.max()
    # the (2, ...) layout spalipy uses for whole grids, and the way back
    grid = np.stack(np.meshgrid(np.arange(0, 512, 64.0), np.arange(0, 512, 128.0)))
    fwd = sp.full_transform(grid)
    assert fwd.shape == grid.shape
    assert np.allclose(sp.full_transform(fwd, 0, inverse=False), grid, atol=1e-4)
    assert sp.aligned_data.dtype == np.float32 and sp.aligned_data.shape == (512, 512)


def test_multi_image_mode_with_a_failing_entry_and_threads():
    p = make_star_pair((384, 384), 250, rotation_deg=4.0, shift=(3.5, -2.0), seed=7)
    crop = p.source[10:374, 6:378]  # the same source cropped: source px (x, y) -> (x + 6, y + 10) of p.source
    other = make_star_pair((384, 384), 250, seed=99)  # another field: nothing in common with the template
    args = ([p.source, other.source, crop],)
    kw = dict(template_data=p.template, min_n_match=30, spline_order=0, source_mask=[None, None, np.zeros(crop.shape,
              np.uint8)], output_shape=[None, None, (300, 320)])
    sp = Spalipy(*args, **kw)
    sp.align()
    assert sp.alignment_failed == [False, True, False]
    assert sp.aligned_data[1] is None and sp.affine_transform[1] is None and sp.source_det_matched[1] is None
    assert sp.aligned_data[0].shape == (384, 384) and sp.aligned_data[2].shape == (300, 320)
    assert sp.aligned_mask[0].dtype == bool and sp.aligned_mask[2].dtype == np.uint8
    assert len(sp.source_det) == 3 and isinstance(sp.transform_stats(), list)
    # the truth is known for entries 0 and 2
    g = np.mgrid[24:360:32, 24:360:32].reshape(2, -1)[::-1].T.astype(float)
    tx, ty = p.truth(g[:, 0], g[:, 1])
    assert np.abs(sp.full_transform(g, 0) - np.column_stack([tx, ty])).max() < 0.02
    assert np.abs(sp.full_transform(g, 2) - np.column_stack([tx - 6, ty - 10])).max() < 0.02
    threaded = Spalipy(*args, thread_pool_max=2, **kw)
    threaded.align()
    for a, b in zip(sp.aligned_data, threaded.aligned_data):
        assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True)
    with pytest.raises(RuntimeError, match="no source entry"):
        Spalipy([other.source, other.source], template_data=p.template, min_n_match=30, spline_order=0).align()
    with pytest.raises(ValueError, match="source_mask must be one value or a list of 3"):
        Spalipy(*args, template_data=p.template, source_mask=[None, None])


def test_a_masked_source_keeps_its_stars_and_a_masked_region_stays_out():
    p = make_star_pair((384, 384), 60, rotation_deg=2.0, shift=(2.5, 1.0), seed=11)  # few stars
    rng = np.random.default_rng(0)
    mask = np.zeros(p.source.shape, np.int16)
    mask[rng.integers(0, 384, 600), rng.integers(0, 384, 600)] = 4  # sparse bad pixels, ~1 per star footprint
    mask[:, :48] |= 1  # and a masked region
    data = np.where(mask != 0, 1e5, p.source)  # garbage under the mask
    plain = detect_frame(p.source, None, 5.0, "plain")
    det = detect_frame(data, mask, 5.0, "masked")
    assert not np.any(np.asarray(det["x"]) < 48 - 0.5)  # nothing from the masked region
    outside = np.asarray(plain["x"]) > 48 + 10
    assert len(det) >= 0.9 * outside.sum()  # the sparse bad pixels cost (almost) no star
    sp = Spalipy(data, source_mask=mask, template_data=p.template, min_n_match=10)
    sp.align()
    g = np.mgrid[60:380:40, 8:380:40].reshape(2, -1)[::-1].T.astype(float)
    tx, ty = p.truth(g[:, 0], g[:, 1])
    assert np.abs(sp.full_transform(g) - np.column_stack([tx, ty])).max() < 0.05
    assert sp.aligned_mask.dtype == np.int16 and set(np.unique(sp.aligned_mask)) <= {0, 1, 4, 5}
    assert not np.any(sp.aligned_data == 1e5)  # masked values never reach the output


def test_memmap_outputs_and_release(tmp_path):
    a = np.arange(12.0).reshape(3, 4)
    mm = memmap_temp_in(tmp_path, a)
    assert isinstance(mm, np.memmap) and np.array_equal(mm, a) and list(tmp_path.iterdir()) == []
    assert memmap_release(mm) and np.array_equal(mm, a)  # pages dropped, contents read back from the file
    assert not memmap_release(a)  # not a memmap
    with pytest.raises(ValueError, match="temp_dir"):
        Spalipy(a, template_data=a, temp_dir=tmp_path / "missing")


def memmap_temp_in(folder, a):
    return _memmap_create_temp(a, temp_dir=folder)
