"""Proxies: strips of whole file blocks, equal to the block mean of the image read in memory."""
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

from rastalign.io import proxy
from rastalign.io.raster import inspect_raster, read_window
from rastalign.io.proxy import read_proxies, read_proxy, strip_rows
from rastalign._kernels.blocks import block_mean
from rastalign._kernels.pixels import erode3


def _write(path, data, nodata=0, block=64, overviews=()):
    prof = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype.name,
                nodata=nodata, tiled=True, blockxsize=block, blockysize=block, compress="deflate")
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(data, 1)
        if overviews:
            ds.build_overviews(list(overviews), rasterio.enums.Resampling.average)
    return inspect_raster(str(path))


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(4)
    data = (rng.random((700, 650)) * 4000 + 1).astype(np.uint16)
    data[100:260, 50:300] = 0  # a nodata hole whose edges cut proxy blocks
    return tmp_path, data


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 700), st.integers(1, 4000), st.integers(1, 20), st.sampled_from([0, 1, 16, 256, 512]),
       st.integers(1, 3000))
def test_strips_cover_the_rows_once_factor_aligned_and_on_block_boundaries(y0, n, factor, block, max_rows):
    rows = strip_rows(y0, y0 + n, factor, block, max_rows)
    assert rows[0][0] == y0 and rows[-1][1] == y0 + n
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:])) and all(a < b for a, b in rows)
    assert all((a - y0) % factor == 0 for a, _ in rows)  # a proxy block never straddles two strips
    if block and np.lcm(factor, block) <= 4 * max(max_rows, factor) and any(
            y % block == 0 for y in range(y0 + factor, y0 + int(np.lcm(factor, block)) + 1, factor)):
        assert all(a % block == 0 for a, _ in rows[1:])  # no block is decoded by two strips


@pytest.mark.parametrize("factor", [1, 2, 3, 8])
def test_strip_by_strip_proxy_equals_the_in_memory_block_mean(image, monkeypatch, factor):
    folder, data = image
    info = _write(folder / "a.tif", data)
    monkeypatch.setattr(proxy, "STRIP_BYTES", 64 * 650 * 4)  # about 64 rows: many strips
    box = (37, 690, 11, 640)
    img, ok = read_proxy(info, 0, factor, box=box)
    full, valid = read_window(info.path, box, bands=[1])
    want, want_ok = (full[0].astype(np.float32), valid) if factor == 1 else block_mean(full[0], valid, factor)
    np.testing.assert_array_equal(ok, want_ok)
    np.testing.assert_array_equal(img, want)
    assert not ok[(200 - 37) // factor, (150 - 11) // factor]  # the hole is invalid
    # and two rasters in one compute give each its own proxy
    other = _write(folder / "b.tif", data[::-1].copy())
    (a, _), (b, bok) = read_proxies((info, 0, factor, None, box), (other, 0, factor, None, None))
    np.testing.assert_array_equal(a, img)
    assert b.shape == (-(-700 // factor), -(-650 // factor))


@pytest.mark.parametrize("shape", [(696, 648), (700, 650)])
def test_overviews_are_used_on_their_true_grid(tmp_path, monkeypatch, shape):
    """A proxy is read from the coarsest overview at most its factor, also when the overview's pixels are not
    blocks of the image (650 px at o = 4: 163 pixels of 3.988 px). On a ramp the block means come out where
    the blocks are, to within the overview's own rounding (half a pixel), also at the far edge, where GDAL's
    averaged read was 3 px off; and a user's nodata, unknown to the overviews, reads full resolution."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    ramp = (10.0 + 3.0 * cols + 5.0 * rows).astype(np.float32)
    ramp[100:260, 50:300] = 0  # a nodata hole
    info = _write(tmp_path / "ramp.tif", ramp, overviews=(2, 4, 8))
    used = []
    real = proxy._from_overview
    monkeypatch.setattr(proxy, "_from_overview", lambda *a: used.append(a[4:]) or real(*a))
    for factor, box in ((4, None), (6, (37, shape[0], 11, shape[1] - 5))):
        used.clear()
        img, ok = read_proxy(info, 0, factor, box=box)
        assert used and used[0][0] == (1 if factor < 8 else 2)  # overview 4 (index 1) for factors 4 and 6
        full, valid = read_window(info.path, box or (0, shape[0], 0, shape[1]), bands=[1])
        want, want_ok = block_mean(full[0], valid, factor)
        inner = ok & want_ok & ~erode3(~want_ok)  # away from the hole's edge and the partial last blocks
        inner[-1, :] = inner[:, -1] = False
        assert inner.mean() > 0.6 and (ok != want_ok).mean() < 0.03
        err = np.abs(img - want)[inner]  # value error of a ramp = position error x (3 or 5 per px)
        assert err.max() <= 0.5 * 8.0 + 1e-3
    used.clear()
    read_proxy(info, 0, 4, nodata=7)
    assert not used
    assert proxy.overview_level(info, 1) is None and proxy.overview_level(info, 3) == 0


def test_native_refinement_samples_every_corner_tile_and_spreads_over_the_scene():
    """Proxy windows keep half a window from the edges, so no tie point need lie in the last row or column of
    file tiles (at a 1024 px proxy of 8192 px the grid stops at 7552 px, and the field was extrapolated over the
    last 640 px: 0.149 px off at a corner of the distorted pair). The corner tiles are measured regardless."""
    from rastalign.tiepoints.refine import TILE, pick_tiles, tile_windows

    g = np.arange(384.0, 7400.0, 580.0)
    points = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    tiles = pick_tiles(points, np.ones(len(points)), 64, (8192, 8192))
    picked = {tuple(t) for t in tiles.tolist()}
    assert {(0, 0), (15, 0), (0, 15), (15, 15)} <= picked
    assert len(picked) == len(tiles) >= 32
    centres = tile_windows(tiles, 256, 64)
    assert centres.shape[1:] in ((4, 2), (9, 2)) and centres.shape[1] * len(tiles) >= 256  # k x k per tile
    inside = (centres - tiles[:, None, :] * TILE)
    assert inside.min() >= 64 and inside.max() <= TILE - 64  # wholly inside their tile
