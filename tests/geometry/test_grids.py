"""The one Grid type: its JSON form, its pixel -> world (pixel centres at integers), the pixel frame of
FITS arrays, and the grids a model records (this layout and rastalign 0.1.0's flat one)."""
import json

import numpy as np

from rastalign.geometry.grids import Grid, OutputGrid
from rastalign.model.rebase import recorded_grids, with_grids
from rastalign.model.model import AlignmentModel

UTM = (0.5, 0.0, 400000.0, 0.0, -0.5, 5800000.0)


def test_grid_round_trips_through_json():
    g = Grid((300, 200), UTM, "EPSG:32633")
    back = Grid.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back == g and back.shape == (300, 200) and back.transform == UTM
    out = OutputGrid(g.shape, g.transform, g.crs, pre=np.eye(3)[:2])
    assert Grid.from_dict(out.to_dict()) == g  # an output grid's record is its grid; ``pre`` is not part of it


def test_pixel_to_world_resolution_and_coords():
    g = Grid((3, 4), UTM)
    np.testing.assert_allclose(g.pixel_to_world, [[0.5, 0.0, 400000.25], [0.0, -0.5, 5799999.75]])
    assert g.resolution == 0.5
    xs, ys = g.coords()
    np.testing.assert_array_equal(xs, 400000.25 + 0.5 * np.arange(4))
    np.testing.assert_array_equal(ys, 5799999.75 - 0.5 * np.arange(3))


def test_pixel_frame_is_world_equals_pixel():
    g = Grid.pixel_frame((5, 7))
    np.testing.assert_array_equal(g.pixel_to_world, np.eye(3)[:2])
    assert g.crs is None and g.resolution == 1.0
    xs, ys = g.coords()
    np.testing.assert_array_equal(xs, np.arange(7)) and np.testing.assert_array_equal(ys, np.arange(5))


def test_recorded_grids_read_both_layouts():
    solve, out, mov = Grid((40, 50), UTM, "EPSG:32633"), Grid((20, 30), UTM, "EPSG:32633"), Grid((20, 30), UTM)
    model = AlignmentModel(np.eye(3)[:2], output_shape=(20, 30), moving_shape=(20, 30))
    new = with_grids(model, solve=solve, output=out, moving=mov)
    assert recorded_grids(AlignmentModel.from_json(new.to_json())) == {"solve": solve, "output": out, "moving": mov}
    legacy = AlignmentModel.from_dict({**model.to_dict(), "meta": {"grids": {
        "solve_transform": list(UTM), "output_transform": list(UTM), "moving_transform": list(UTM),
        "crs": "EPSG:32633", "kind": "raster"}}})
    rec = recorded_grids(legacy)
    assert rec["output"] == out and rec["moving"] == Grid((20, 30), UTM, "EPSG:32633")
    assert rec["solve"].shape is None and rec["solve"].transform == UTM  # 0.1.0 did not record it
    # re-recording one grid writes this layout, keeping the others and the non-grid entries
    moved = with_grids(legacy, moving=mov).meta["grids"]
    assert set(moved) == {"kind", "solve", "output", "moving"} and moved["moving"] == mov.to_dict()
    assert recorded_grids(AlignmentModel.identity()) == {"solve": None, "output": None, "moving": None}


def test_geotransform_inverts_pixel_to_world():
    """The one conversion between GDAL's corner geotransform and rastalign's pixel-centre matrix, both ways."""
    from rastalign.geometry.affine import geotransform, pixel_to_world

    t = (0.5, 0.01, 500000.0, -0.02, -0.5, 5800000.0)
    m = pixel_to_world(t)
    np.testing.assert_allclose(m @ [0.0, 0.0, 1.0], [500000.0 + 0.255, 5800000.0 - 0.26])  # first pixel's centre
    np.testing.assert_allclose(geotransform(m), t, rtol=0, atol=1e-9)
