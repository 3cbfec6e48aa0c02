"""Proxies: strips of whole file blocks, equal to the block mean of the image read in memory."""
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

from rastalign import proxy
from rastalign.io.raster import inspect_raster, read_window
from rastalign.proxy import block_mean, read_proxies, read_proxy, strip_rows


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


def test_overviews_that_are_exact_blocks_are_used_and_others_are_not(image, monkeypatch):
    """GDAL's averaged read takes an overview whose pixels are exact blocks of the image: close to the
    full-resolution block mean (the overview's own rounding apart). An overview of a side its factor does
    not divide has a scale error, so such a file is decimated from its full-resolution pixels, exactly."""
    folder, data = image
    used = []
    real = proxy._gdal_average
    monkeypatch.setattr(proxy, "_gdal_average", lambda *a: used.append(a) or real(*a))
    exact = _write(folder / "ov.tif", data[:696, :648].copy(), overviews=(2, 4))
    assert proxy.exact_overviews(exact, 4) and not proxy.exact_overviews(exact, 1)
    img, ok = read_proxy(exact, 0, 4)
    assert used  # the overview path ran
    full, valid = read_window(exact.path, (0, 696, 0, 648), bands=[1])
    want, want_ok = block_mean(full[0], valid, 4)
    both = ok & want_ok
    assert both.mean() > 0.8
    assert np.abs(img[both] - want[both]).max() <= 1.0  # the same pixels' means, rounded to the file's integers
    used.clear()
    read_proxy(exact, 0, 4, nodata=7)  # a nodata of the user's own: the overview does not know it
    assert not used
    read_proxy(exact, 0, 4, box=(0, 696, 2, 648))  # a box off the block grid
    assert not used
    skewed = _write(folder / "skewed.tif", data, overviews=(2, 4))  # 700 x 650: 650 / 4 is not whole
    assert not proxy.exact_overviews(skewed, 4)
    img, ok = read_proxy(skewed, 0, 4)
    assert not used
    full, valid = read_window(skewed.path, (0, 700, 0, 650), bands=[1])
    np.testing.assert_array_equal(img, block_mean(full[0], valid, 4)[0])


def test_native_refinement_samples_every_corner_tile_and_spreads_over_the_scene():
    """Proxy windows keep half a window from the edges, so no tie point need lie in the last row or column of
    file tiles (at a 1024 px proxy of 8192 px the grid stops at 7552 px, and the field was extrapolated over the
    last 640 px: 0.149 px off at a corner of the distorted pair). The corner tiles are measured regardless."""
    from rastalign.refine import TILE, pick_tiles, tile_windows

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
