"""``--correction georef``: the moving pixels byte for byte under a corrected geotransform, placing every
point within 0.01 px of its truth; a model that needs its field is refused in one line."""
import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from rastalign.model.affine import apply_affine, invert_affine, pixel_to_world
from rastalign.testing import write_pair


def _cli(args):
    return subprocess.run([sys.executable, "-m", "rastalign.cli.vhr", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def affine_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("georef")
    moving, fixed, truth = write_pair(d, (600, 520), rotation_deg=0.3, shift=(4.2, -2.6), bands=2, seed=8)
    with rasterio.open(moving, "r+") as ds:
        ds.update_tags(ACQUISITION="2016-05-29")
        ds.build_overviews([2, 4])
    return d, moving, fixed, truth


def test_georef_keeps_the_pixels_and_places_every_point_within_a_hundredth_of_a_pixel(affine_pair, tmp_path):
    d, moving, fixed, truth = affine_pair
    out = tmp_path / "g.tif"
    r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", out, "--correction", "georef"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["correction"]["residual_field_max_px"] == 0
    with rasterio.open(out) as g, rasterio.open(moving) as m, rasterio.open(fixed) as f:
        assert np.array_equal(g.read(), m.read()) and g.dtypes == m.dtypes and g.nodata == m.nodata
        assert g.overviews(1) == m.overviews(1) == [2, 4] and g.tags()["ACQUISITION"] == "2016-05-29"
        assert g.crs == m.crs and g.tags()["RASTALIGN_CORRECTION"] == "georef"
        new_m2w = pixel_to_world(tuple(g.transform)[:6])
        w2f = invert_affine(pixel_to_world(tuple(f.transform)[:6]))
    # a fixed pixel p shows the scene point that the moving image has at truth(p): the corrected
    # georeference must put that moving pixel back on p's world position
    gx, gy = np.meshgrid(np.arange(10, 510, 25.0), np.arange(10, 590, 25.0))
    mx, my = truth(gx.ravel(), gy.ravel())
    wx, wy = apply_affine(new_m2w, mx, my)
    fx, fy = apply_affine(w2f, wx, wy)
    assert np.hypot(fx - gx.ravel(), fy - gy.ravel()).max() < 0.01


def test_georef_refuses_a_distorted_model_and_unsuitable_outputs(tmp_path):
    moving, fixed, _ = write_pair(tmp_path, (600, 520), rotation_deg=0.3, shift=(4.2, -2.6), distortion_px=2.0,
                                  seed=8)
    for extra, match in ((["--output-image", tmp_path / "o.tif"], "use --correction resample"),
                         (["--output-image", tmp_path / "o.cog.tif"], "--correction georef keeps"),
                         (["--output-image", tmp_path / "o.tif", "--no-output-on-moving-grid"], "--correction georef keeps")):
        r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--correction", "georef", *extra])
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and match in r.stderr, r.stderr
    assert not list(tmp_path.glob("o*"))
