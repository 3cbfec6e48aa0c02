"""The sinks: GeoTIFF tiles encoded on the workers read back exactly as written (every dtype,
ragged edges, several bands), the same bytes whatever the chunking; Zarr is georeferenced;
metadata survives; bad outputs are refused before anything is written."""
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from rastalign.sinks.geotiff import write_geotiff
from rastalign.sinks.carried import Carried
from rastalign.sinks.zarr import write_zarr
from rastalign.io.raster import verify_complete

from conftest import read_tif, write_tif


def Grid(shape, transform=(0.5, 0, 500000.0, 0, -0.5, 5800000.0), crs="EPSG:32633"):
    from rastalign.geometry.grids import Grid

    return Grid(shape, transform, crs)


def _data(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = rng.normal(100, 50, shape).astype(dt)
        x[:, :3, :5] = np.nan
        x[:, 7, 7] = np.inf
        return x
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, shape, endpoint=True, dtype=dt)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 37, 53), (3, 600, 530)])
def test_geotiff_tiles_read_back_exactly(tmp_path, dtype, shape):
    import dask.array as da

    data = _data(dtype, shape)
    paths = []
    for k, chunks in enumerate([(shape[0], 64, 100), (shape[0], (17, shape[1] - 17), -1)]):
        out = tmp_path / f"o{k}.tif"
        stats = write_geotiff(da.from_array(data, chunks=chunks), out, Grid(shape[1:]), None)
        back, profile, _ = read_tif(out)
        assert np.array_equal(back, data, equal_nan=True)
        assert profile["tiled"] and profile["compress"] == "deflate"
        with rasterio.open(out) as ds:
            want = "3" if np.dtype(dtype).kind == "f" else "2"
            assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == want
        verify_complete(out, shape[1:], shape[0])
        assert stats["valid_pixels"] > 0
        paths.append(out)
    assert paths[0].read_bytes() == paths[1].read_bytes()  # bytes do not depend on the chunking
    assert not [p for p in tmp_path.iterdir() if "rastalign-tmp" in p.name]


def test_cog_is_a_valid_cog_with_overviews_and_predictor(tmp_path):
    import dask.array as da

    data = _data("uint16", (2, 1100, 900))
    out = tmp_path / "o.tif"
    write_geotiff(da.from_array(data, chunks=(2, 300, 300)), out, Grid((1100, 900)), 0.0, fmt="COG")
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        assert ds.overviews(1) and np.array_equal(ds.read(), data)


def test_zarr_is_georeferenced_and_replaces_only_a_store(tmp_path):
    import dask.array as da
    import xarray as xr
    import rioxarray  # noqa: F401

    data = _data("uint16", (2, 300, 260))
    out = tmp_path / "o.zarr"
    write_zarr(da.from_array(data, chunks=(2, 100, 64)), out, Grid((300, 260)), 0.0, Carried(summary={"K": "v"}))
    back = xr.open_zarr(out)["aligned"]
    assert np.array_equal(back.values, data)
    assert back.rio.crs.to_epsg() == 32633 and back.rio.nodata == 0
    assert tuple(back.rio.transform())[:6] == (0.5, 0, 500000.0, 0, -0.5, 5800000.0)
    write_zarr(da.from_array(data[:1], chunks=(1, 100, 64)), out, Grid((300, 260)), 0.0)  # an existing store
    assert xr.open_zarr(out)["aligned"].shape == (1, 300, 260)
    folder = tmp_path / "not_a_store"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="not a Zarr store"):
        write_zarr(da.from_array(data, chunks=-1), folder, Grid((300, 260)), 0.0)
    assert (folder / "keep.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if "rastalign-tmp" in p.name]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from rastalign.testing.pairs import write_pair

    d = tmp_path_factory.mktemp("sinkpair")
    moving, fixed, _ = write_pair(d, (300, 320), rotation_deg=0.3, shift=(4.2, -2.1), bands=2, seed=3)
    with rasterio.open(moving, "r+") as ds:  # what describes the pixels, which the output must keep
        ds.update_tags(TIFFTAG_DATETIME="2016:05:29 10:00:00", ACQUISITION="2016-05-29")
        ds.update_tags(1, WAVELENGTH="560")
        ds.set_band_description(1, "green")
        ds.set_band_description(2, "red")
        ds.set_band_unit(1, "DN")
        ds.scales, ds.offsets = (0.0001, 0.0001), (-0.1, -0.1)
    return d, moving, fixed


def _cli(args):
    return subprocess.run([sys.executable, "-m", "rastalign.cli.vhr", *map(str, args)], capture_output=True,
                          text=True)


@pytest.mark.slow
def test_output_keeps_the_moving_images_metadata(pair, tmp_path):
    d, moving, fixed = pair
    out = tmp_path / "out.tif"
    r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", out])
    assert r.returncode == 0, r.stderr
    with rasterio.open(out) as ds, rasterio.open(moving) as src:
        assert ds.tags()["TIFFTAG_DATETIME"] == "2016:05:29 10:00:00" and ds.tags()["ACQUISITION"] == "2016-05-29"
        assert "RASTALIGN_MODEL" in ds.tags()
        assert ds.tags(1)["WAVELENGTH"] == "560"
        assert ds.descriptions == ("green", "red") and ds.units[0] == "DN"
        assert ds.scales == src.scales and ds.offsets == src.offsets


@pytest.mark.slow
@pytest.mark.parametrize("name,fmt", [("out.png", None), ("out.jpg", None), ("out.tif", "FITS"),
                                      ("out.fits", "GTiff"), ("out.zarr", "COG")])
def test_output_suffix_must_match_the_format(pair, tmp_path, name, fmt):
    d, moving, fixed = pair
    out = tmp_path / name
    r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", out]
             + (["--output-format", fmt] if fmt else []))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "does not match" in r.stderr and "--output-format" in r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("fmt,name", [("cog", "out.tif"), ("Cog", "out.cog.tif"), ("fits", "out.fits"),
                                      ("zarr", "out.zarr"), ("gtiff", "out.tiff")])
def test_format_names_in_any_case(pair, tmp_path, fmt, name):
    d, moving, fixed = pair
    out = tmp_path / name
    r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", out, "--output-format", fmt])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output_image_path"] == str(out) and out.exists()


@pytest.mark.slow
def test_a_fifo_or_device_at_the_output_path_is_never_replaced(pair, tmp_path):
    d, moving, fixed = pair
    fifo = tmp_path / "fifo.tif"
    os.mkfifo(fifo)
    targets = [fifo]
    if os.geteuid() == 0:  # a copy of /dev/full, as in the report
        dev = tmp_path / "full.tif"
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        targets.append(dev)
    for target in targets:
        for args in (["--output-image", target], ["--output-image", tmp_path / "ok.tif", "--model-out", target]):
            r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--overwrite", *args])
            assert r.returncode != 0 and "not a regular file" in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1
            mode = os.stat(target).st_mode
            assert stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)
    assert not (tmp_path / "ok.tif").exists()


@pytest.mark.parametrize("local_levels", [3, 1])
def test_cog_overviews_are_valid_pixel_means_made_blockwise(tmp_path, monkeypatch, local_levels):
    """Each overview is the 2x2 mean of the valid pixels of the level above (odd edges alone),
    whether a block makes it itself or the coarse levels come from the pieces; a valid COG."""
    import dask.array as da

    import rastalign.sinks.cog as cog
    from rastalign.sinks.cog import reduce2

    monkeypatch.setattr(cog, "MAX_LOCAL_LEVELS", local_levels)
    rng = np.random.default_rng(1)
    data = rng.integers(1, 4000, (2, 1100, 700)).astype(np.uint16)
    data[:, 300:420, 100:333] = 0  # nodata hole
    out = tmp_path / "o.tif"
    write_geotiff(da.from_array(data, chunks=(2, 256, 300)), out, Grid((1100, 700), crs="EPSG:32633"), 0.0,
                  fmt="COG")
    level = data
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.overviews(1) == [2, 4]
        assert np.array_equal(ds.read(), data)
        for f in ds.overviews(1):
            level = reduce2(level, 0.0)
            assert np.array_equal(ds.read(out_shape=level.shape), level), f
    assert level[:, 300 // 4 + 1, 100 // 4 + 1].tolist() == [0, 0]
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _ = cog_validate(str(out))
    assert valid, errors


@pytest.mark.slow
def test_progress_covers_the_whole_run(pair, tmp_path):
    """``--progress`` draws one line through estimation and the warp; without it stderr stays empty."""
    d, moving, fixed = pair
    r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", tmp_path / "a.tif", "--progress"])
    assert r.returncode == 0 and json.loads(r.stdout)["output_image_path"].endswith("a.tif")
    states = [s.strip() for s in r.stderr.replace("\x1b[K", "").splitlines() if s.strip()]  # text mode: \r -> \n
    assert any(s.startswith("estimate") and "tasks" in s for s in states), states
    assert states[-1].startswith("warp + write") and "blocks" in states[-1], states
    r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", tmp_path / "b.tif"])
    assert r.returncode == 0 and r.stderr == ""


@pytest.mark.slow
def test_summary_states_the_correction_and_a_failed_check_still_writes_the_diagnosis(pair, tmp_path):
    d, moving, fixed = pair
    r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", tmp_path / "ok.tif"])
    c = json.loads(r.stdout)["correction"]
    # write_pair: fixed px -> moving px is R(0.3 deg) about the centre + (4.2, -2.1): the content moves back
    assert abs(c["shift_px"][0] + 4.2) < 0.02 and abs(c["shift_px"][1] - 2.1) < 0.02, c
    assert abs(c["shift_crs"][0] - 0.5 * c["shift_px"][0]) < 1e-3 and abs(c["shift_crs"][1] + 0.5 * c["shift_px"][1]) < 1e-3
    assert abs(c["rotation_deg"] - 0.3) < 0.005 and abs(c["scale"] - 1) < 1e-3 and c["residual_field_max_px"] == 0
    rep, plot, keep = tmp_path / "r.json", tmp_path / "p.png", tmp_path / "keep"
    keep.mkdir()
    out = tmp_path / "fail.tif"
    r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", out, "--max-rms", "1e-6",
              "--report-out", rep, "--plot", plot, "--keep-temp-dir", "--temp-dir", keep])
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "quality check" in r.stderr and str(rep) in r.stderr and str(plot) in r.stderr
    report = json.loads(rep.read_text())
    assert report["status"] == "failed" and report["quality"]["passed"] is False and report["tiepoints"]
    assert plot.stat().st_size > 10000 and [p.name for p in keep.iterdir()][0].startswith("rastalign_")
    assert not out.exists() and not (tmp_path / "fail.tif.model.json").exists()


@pytest.mark.slow
def test_an_unknown_output_crs_is_refused_before_any_work(pair, tmp_path):
    d, moving, fixed = pair
    r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", tmp_path / "o.tif",
              "--output-crs", "EPSG:999999", "-v"])
    assert r.returncode == 2 and "--output-crs EPSG:999999" in r.stderr and "ERROR 1" not in r.stderr
    assert "estimate" not in r.stderr.lower() and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_png_inputs_align_in_pixel_space_without_warnings(pair, tmp_path):
    from PIL import Image

    d, moving, fixed = pair
    paths = []
    for src, name in ((moving, "m.png"), (fixed, "f.png")):
        band = read_tif(src)[0][0].astype(np.float64)
        img = np.clip((band - band.min()) / (np.ptp(band) + 1e-9) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / name)
        paths.append(tmp_path / name)
    r = _cli(["--moving-image", paths[0], "--fixed-image", paths[1], "--output-image", tmp_path / "o.tif"])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    c = json.loads(r.stdout)["correction"]
    assert c["frame"].startswith("pixels") and abs(c["shift_px"][0] + 4.2) < 0.05


@pytest.mark.slow
def test_qa_plot_has_the_thumbnail_footprint_and_field_panels(pair, tmp_path):
    from PIL import Image

    from rastalign.model import AlignmentModel
    from rastalign.pipelines.report import _footprint

    d, moving, fixed = pair
    plot = tmp_path / "qa.png"
    r = _cli(["--moving-image", moving, "--fixed-image", fixed, "--output-image", tmp_path / "o.tif", "--plot", plot])
    assert r.returncode == 0, r.stderr
    w, h = Image.open(plot).size
    assert w >= 1600 and h >= 500  # three panels: tie points on the thumbnail, field magnitude, histogram
    fx, fy = _footprint(AlignmentModel.identity((30, 40)), {"moving_shape": [30, 40]})
    assert (fx.min(), fx.max(), fy.min(), fy.max()) == (-0.5, 39.5, -0.5, 29.5)


@pytest.mark.parametrize("fmt,name", [("GTiff", "o.tif"), ("Zarr", "o.zarr"), ("FITS", "o.fits")])
def test_every_format_carries_the_model_and_summary_in_its_own_place(tmp_path, fmt, name):
    """One description of what an output carries; each sink puts it where its format keeps metadata."""
    import dask.array as da
    from astropy.io import fits

    from rastalign.sinks.output import write_output, written_shape

    data = _data("float32", (2, 70, 90))
    grid = Grid((70, 90))
    carried = Carried(model='{"affine": [[1, 0, 0], [0, 1, 0]]}', summary={"RANMATCH": 41},
                      descriptions=("green", "red"))
    out = tmp_path / name
    write_output(da.from_array(data, chunks=(2, 32, 32)), out, fmt, grid, np.nan, carried)
    assert written_shape(out) == (70, 90)
    if fmt == "FITS":
        hdr = fits.getheader(out)
        assert hdr["RAMODEL"] == "rastalign" and hdr["RANMATCH"] == 41
        assert [hdr[f"GT_{k}"] for k in "ABCDEF"] == list(grid.transform[:6])  # the geotransform of a raster grid
        assert (hdr["BANDNM1"], hdr["BANDNM2"]) == ("green", "red")
        back = fits.getdata(out)
    elif fmt == "Zarr":
        import xarray as xr

        ds = xr.open_zarr(out)
        assert ds.attrs["RASTALIGN_MODEL"] == carried.model and ds.attrs["RANMATCH"] == "41"
        assert ds["aligned"].attrs["long_name"] == ["green", "red"]
        back = ds["aligned"].values
    else:
        with rasterio.open(out) as ds:
            assert ds.tags()["RASTALIGN_MODEL"] == carried.model and ds.tags()["RANMATCH"] == "41"
            back = ds.read()
    ok = np.isfinite(data)
    assert np.array_equal(np.asarray(back).reshape(data.shape)[ok], data[ok])
