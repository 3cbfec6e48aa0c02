"""``--correction georef``: the moving pixels byte for byte under a corrected geotransform, placing every
point within 0.01 px of its truth; a model with a residual field as GCPs (GeoTIFF or VRT) within 0.05 px;
a field no GCP grid can hold is refused in one line."""
import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from rastalign.geometry.affine import apply_affine, invert_affine, pixel_to_world
from rastalign.testing.pairs import write_pair


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


@pytest.mark.slow
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
    # the accessor: the moving array itself, lazy, under the same corrected transform
    import rioxarray

    arr = rioxarray.open_rasterio(moving, chunks=256)
    cor = arr.coreg.align(rioxarray.open_rasterio(fixed, chunks=256), correction="georef")
    assert cor.data.name == arr.data.name  # the same graph: no task added, no pixel changed
    with rasterio.open(out) as g:
        assert np.allclose(tuple(cor.rio.transform())[:6], tuple(g.transform)[:6], rtol=0, atol=1e-6)
    # the saved model through rastalign apply: a VRT of the moving file with the same georeference
    from rastalign.cli.demo import main as rastalign_main

    assert rastalign_main(["apply", "--model", str(out) + ".model.json", "--moving-image", str(moving),
                           "--output-image", str(tmp_path / "a.vrt"), "--correction", "georef"]) == 0
    with rasterio.open(tmp_path / "a.vrt") as v, rasterio.open(out) as g:
        assert np.allclose(tuple(v.transform), tuple(g.transform), rtol=0, atol=1e-9) and \
            np.array_equal(v.read(), g.read())


@pytest.mark.slow
def test_a_distorted_model_becomes_gcps_that_place_every_point_within_five_hundredths(tmp_path):
    from rasterio.transform import GCPTransformer

    from rastalign import load_model

    moving, fixed, truth = write_pair(tmp_path, (600, 520), rotation_deg=0.3, shift=(4.2, -2.6), distortion_px=2.0,
                                      seed=8)
    for name in ("g.tif", "g.vrt"):
        out = tmp_path / name
        r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", out, "--correction", "georef"])
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""  # a successful run says nothing (GDAL's note that GCPs replace the geotransform)
        summary = json.loads(r.stdout)
        assert "GCPs" in summary["georeference"] and summary["correction"]["residual_field_max_px"] > 0.5
        with rasterio.open(out) as g, rasterio.open(moving) as m, rasterio.open(fixed) as f:
            assert np.array_equal(g.read(), m.read()) and g.tags()["RASTALIGN_CORRECTION"] == "georef"
            gcps, crs = g.gcps
            assert len(gcps) >= 100 and crs == m.crs
            w2f = invert_affine(pixel_to_world(tuple(f.transform)[:6]))
        if name.endswith(".vrt"):
            assert out.stat().st_size < 200_000 < moving.stat().st_size  # references the moving file
        # the GCPs reproduce the model: the moving pixel the model sends output pixel p to lands on p's world
        model = load_model(f"{out}.model.json")
        gx, gy = np.meshgrid(np.arange(3.5, 517, 23.0), np.arange(2.5, 598, 23.0))
        for pull, tol in ((model, 0.05), (truth, None)):
            mx, my = pull(gx.ravel(), gy.ravel())
            with GCPTransformer(gcps, tps=True) as t:
                wx, wy = t.xy(my, mx, offset="center")
            fx, fy = apply_affine(w2f, np.asarray(wx), np.asarray(wy))
            err = np.hypot(fx - gx.ravel(), fy - gy.ravel())
            if tol:
                assert err.max() < tol, (name, err.max())
            else:  # and the truth as closely as the model itself (a small distorted pair: worst near the edges)
                assert np.median(err) < 0.03, (name, np.median(err))


@pytest.mark.slow
def test_a_field_gcps_cannot_hold_and_unsuitable_outputs_are_refused(tmp_path):
    import dataclasses

    from rastalign.errors import InputError
    from rastalign.sinks.georef import write_georef
    from rastalign.io.raster import inspect_raster
    from rastalign.model.model import AlignmentModel
    from rastalign.model.residual import SplineField

    moving, fixed, _ = write_pair(tmp_path, (600, 520), rotation_deg=0.3, shift=(4.2, -2.6), seed=8)
    rng = np.random.default_rng(1)
    rough = SplineField((0.0, 0.0), (8.0, 8.0), (66, 76), rng.normal(0, 2.0, (78, 68)), rng.normal(0, 2.0, (78, 68)))
    model = AlignmentModel(np.array([[1.0, 0, 0.5], [0, 1.0, 0.2]]), rough, output_shape=(600, 520),
                           moving_shape=(600, 520))
    with pytest.raises(InputError, match="GCPs reproduce it only to .* use --correction resample"):
        write_georef(str(moving), model, inspect_raster(str(moving)), str(tmp_path / "r.tif"))
    for extra, match in ((["--output-image", tmp_path / "o.cog.tif"], "--correction georef keeps"),
                         (["--output-image", tmp_path / "o.tif", "--no-output-on-moving-grid"], "--correction georef keeps")):
        r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--correction", "georef", *extra])
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and match in r.stderr, r.stderr
    assert not list(tmp_path.glob("o*")) and not list(tmp_path.glob("r*"))
    assert dataclasses.is_dataclass(rough)
