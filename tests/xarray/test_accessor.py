"""The xarray accessor ``coreg``: lazy, equal to the CLI, CRS carried, models re-based across grids."""
import json
import threading

import dask
import dask.array as da
from dask.callbacks import Callback
import numpy as np
import pytest
import rioxarray
import xarray as xr

import rastalign
from rastalign.io.arrays import array_grid
from rastalign.model.rebase import rebase_recorded
from rastalign.cli.vhr import main as vhr_main
from rastalign.testing.pairs import write_pair

SHAPE = (512, 512)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acc")
    m, f, _ = write_pair(folder, shape=SHAPE, bands=2, rotation_deg=0.3, shift=(5.2, -3.1), seed=3)
    return folder, m, f


def _cli(folder, m, f, name, args):
    out = folder / name
    assert vhr_main(["--moving-image", str(m), "--fixed-image", str(f), "--output-image", str(out), *args]) == 0
    return rioxarray.open_rasterio(out)


class _Reads(Callback):
    """Counts the tasks that read blocks of ``arr`` from its file (a dask callback: the array's graph stays the
    file's own, which the accessor may read directly; a probe inside the graph would make it an array whose
    values the accessor cannot vouch for). While it is active, dask does not fuse tasks, which would hide the
    reads inside other tasks' keys (which ones depends on the process's hash seed)."""

    def __init__(self, arr):
        super().__init__()
        self.name, self.n, self.lock = arr.data.name, 0, threading.Lock()
        self._config = None

    def __enter__(self):
        self._config = dask.config.set({"optimization.fuse.active": False})
        self._config.__enter__()
        return super().__enter__()

    def __exit__(self, *args):
        super().__exit__(*args)
        self._config.__exit__(*args)

    def _pretask(self, key, dsk, state):
        if isinstance(key, tuple) and key[0] == self.name:
            with self.lock:
                self.n += 1


@pytest.mark.parametrize("opts,args", [
    ({"split_factor": 2}, ["--split-factor", "2"]),
    ({"output_on_moving_grid": False, "resampling": "bilinear", "chunks": (200, 160)},
     ["--no-output-on-moving-grid", "--resampling", "bilinear", "--chunks", "200,160"]),
])
def test_align_is_lazy_carries_crs_and_equals_cli(pair, opts, args, capsys):
    folder, m, f = pair
    moving = rioxarray.open_rasterio(m, chunks=128)
    reference = rioxarray.open_rasterio(f, chunks=128)
    counter = _Reads(moving)
    with counter:
        aligned = moving.coreg.align(reference, **opts)  # estimation reads the files' proxies (dask tasks)
    assert counter.n == 0  # but no block of the moving array is computed before the warp is
    assert isinstance(aligned.data, da.Array)
    assert aligned.rio.crs == moving.rio.crs
    cli = _cli(folder, m, f, f"cli_{len(args)}.tif", args)
    capsys.readouterr()
    assert aligned.shape == cli.shape and aligned.dtype == cli.dtype
    assert aligned.rio.transform() == cli.rio.transform()
    assert aligned.rio.nodata == cli.rio.nodata
    # one output chunk reads only the source blocks it needs
    y1, x1 = aligned.chunks[1][0], aligned.chunks[2][0]
    with counter:
        aligned[:, :y1, :x1].compute()
    assert 0 < counter.n < moving.data.npartitions
    counter.n = 0
    with counter:
        values = aligned.compute().values
    assert counter.n > 0
    assert np.array_equal(values, cli.values)


def test_in_memory_arrays_and_dataset(pair, capsys):
    folder, m, f = pair
    moving = rioxarray.open_rasterio(m, chunks=128)
    reference = rioxarray.open_rasterio(f)
    mem = xr.DataArray(moving.values, dims=moving.dims, coords=moving.coords, attrs=dict(moving.attrs))
    assert not mem.encoding and not isinstance(mem.data, da.Array)  # not file-backed: estimated on the array
    out = mem.coreg.align(reference.load(), band_index=1)
    assert isinstance(out.data, da.Array)
    cli = _cli(folder, m, f, "cli_band1.tif", ["--band-index", "1"])
    capsys.readouterr()
    assert np.array_equal(out.values, cli.values)
    ds = xr.Dataset({"a": moving, "b": moving.copy()})
    res = ds.coreg.align(reference, variable="a")
    assert set(res.data_vars) == {"a", "b"}
    assert np.array_equal(res["a"].values, res["b"].values)
    assert res["a"].rio.crs == moving.rio.crs


def test_model_json_roundtrip_and_apply_on_reference_grid(pair, tmp_path):
    _, m, f = pair
    moving = rioxarray.open_rasterio(m, chunks=256)
    reference = rioxarray.open_rasterio(f, chunks=256)
    model = moving.coreg.estimate(reference, output_on_moving_grid=False)
    cropped = moving.coreg.apply(rastalign.AlignmentModel.from_json(model.to_json()))
    full = moving.coreg.apply(model, grid=reference)  # re-based onto the whole reference grid
    assert full.shape[1:] == reference.shape[1:]  # same grids here: the cropped grid is the whole overlap
    sub = full.sel(x=cropped.x, y=cropped.y)
    assert np.array_equal(sub.values, cropped.values)
    on_moving = moving.coreg.estimate(reference, plot=str(tmp_path / "qa.png"))  # same geometry, moving grid
    assert (tmp_path / "qa.png").stat().st_size > 10000  # the CLI's --plot figure
    assert np.array_equal(moving.coreg.apply(on_moving, grid=reference).values, full.values)


def test_rebase_to_another_moving_resolution(pair):
    _, m, f = pair
    moving = rioxarray.open_rasterio(m, chunks=256)
    model = moving.coreg.estimate(rioxarray.open_rasterio(f, chunks=256))
    coarse = moving.coarsen(x=2, y=2).mean()
    m2, out = rebase_recorded(model, array_grid(coarse))
    assert out.shape == SHAPE and m2.moving_shape == coarse.shape[1:]
    x, y = np.meshgrid(np.linspace(0, 511, 7), np.linspace(0, 511, 5))
    fx, fy = model(x, y)
    cx, cy = m2(x, y)
    np.testing.assert_allclose(cx, (fx + 0.5) / 2 - 0.5, atol=1e-9)
    np.testing.assert_allclose(cy, (fy + 0.5) / 2 - 0.5, atol=1e-9)
    with pytest.raises(rastalign.InputError):
        moving.isel(x=slice(0, 300)).coreg.apply(rastalign.AlignmentModel(model.affine, model.field,
                                                                        output_shape=(10, 10), moving_shape=SHAPE))



def test_model_saved_by_0_1_0_applies_as_a_model_of_this_version(pair):
    """rastalign 0.1.0 recorded the grids flat (``*_transform`` and the reference's ``crs``): such a model
    JSON is applied on its own grid, re-based onto the reference grid and onto a coarser moving array
    exactly as the model recorded in this version's layout (one :class:`~rastalign.geometry.grids.Grid` each)."""
    _, m, f = pair
    moving = rioxarray.open_rasterio(m, chunks=256)
    reference = rioxarray.open_rasterio(f, chunks=256)
    model = moving.coreg.estimate(reference, output_on_moving_grid=False)
    g = model.meta["grids"]
    assert g["output"]["shape"] == list(model.output_shape) and g["moving"]["shape"] == list(SHAPE)
    flat = {"solve_transform": g["solve"]["transform"], "output_transform": g["output"]["transform"],
            "moving_transform": g["moving"]["transform"], "crs": g["solve"]["crs"], "kind": "raster"}
    legacy = rastalign.AlignmentModel.from_json(json.dumps({**model.to_dict(), "meta": {"grids": flat}}))
    coarse = moving.coarsen(x=2, y=2).mean()
    for arr, kw in ((moving, {}), (moving, {"grid": reference}), (coarse, {})):
        old, new = arr.coreg.apply(legacy, **kw), arr.coreg.apply(model, **kw)
        assert old.shape == new.shape and old.rio.transform() == new.rio.transform() and old.rio.crs == new.rio.crs
        assert np.array_equal(old.values, new.values)

def test_fits_arrays_align_onto_template_like_align_fits(tmp_path):
    from astropy.io import fits

    from rastalign.testing.stars import write_star_pair

    s, t, _ = write_star_pair(tmp_path, shape=(512, 512), n_stars=300, rotation_deg=0.4, shift=(6.3, -4.1))
    src, tpl = rastalign.open_fits(s, chunks=256), rastalign.open_fits(t, chunks=256)
    out = src.coreg.align(tpl, output_on_moving_grid=False)
    assert isinstance(out.data, da.Array) and out.attrs["wcs"] is not None
    assert "rastalign_path" not in out.attrs
    rastalign.align_fits(str(s), str(tmp_path / "cli.fits"), template_path=str(t))
    ref = fits.getdata(tmp_path / "cli.fits")
    np.testing.assert_array_equal(out.values[0], ref)
    on_moving = src.coreg.align(tpl)
    assert on_moving.shape == src.shape and on_moving.attrs["wcs"].wcs.crval[0] == 150.0


def test_a_fits_array_resampled_onto_a_grid_without_wcs_drops_its_own(tmp_path):
    """The moving header's WCS describes the moving pixels: on the template's grid (which has no WCS) it is
    dropped, in the array's attributes and in the file ``to_raster`` writes, as ``align_fits`` does."""
    from astropy.io import fits

    from rastalign.testing.stars import write_star_pair

    s, t, _ = write_star_pair(tmp_path, shape=(384, 384), n_stars=250, rotation_deg=0.4, shift=(6.3, -4.1))
    with fits.open(t, mode="update") as ht, fits.open(s, mode="update") as hs:
        for k in [k for k in ht[0].header if k.startswith(("CTYPE", "CRPIX", "CRVAL", "CDELT", "CUNIT"))]:
            hs[0].header[k] = ht[0].header.pop(k)
    src, tpl = rastalign.open_fits(s, chunks=128), rastalign.open_fits(t, chunks=128)
    assert src.attrs["wcs"] is not None and tpl.attrs["wcs"] is None
    out = src.coreg.align(tpl, output_on_moving_grid=False)
    assert out.attrs["wcs"] is None and "CRPIX1" not in out.attrs["fits_header"]
    assert src.attrs["fits_header"]["CRPIX1"] == 192.0  # the moving array's own header is untouched
    out.coreg.to_raster(tmp_path / "out.fits")
    hdr = fits.getheader(tmp_path / "out.fits")
    assert "CRPIX1" not in hdr and "CTYPE1" not in hdr and hdr["OBJECT"] == "synthetic source"


def test_unknown_option_is_refused(pair):
    _, m, f = pair
    moving = rioxarray.open_rasterio(m, chunks=256)
    with pytest.raises(rastalign.InputError, match="unknown option"):
        moving.coreg.align(rioxarray.open_rasterio(f), resampling_method="cubic")


def test_coarser_grid_equals_cli_and_to_raster_writes_the_cli_file(pair, tmp_path, capsys):
    """On an output grid 4x coarser than the moving grid the accessor box-averages like the CLI
    (same lazy warp, same prefilter), and ``to_raster`` writes the CLI's tiled, compressed file."""
    import rasterio
    from affine import Affine

    folder, m, f = pair
    with rasterio.open(f) as ds:
        t, crs = ds.transform, ds.crs
    like = tmp_path / "coarse.tif"
    with rasterio.open(like, "w", driver="GTiff", width=SHAPE[1] // 4, height=SHAPE[0] // 4, count=1, dtype="uint8",
                       crs=crs, transform=Affine(t.a * 4, t.b, t.c, t.d, t.e * 4, t.f)) as ds:
        ds.write(np.ones((1, SHAPE[0] // 4, SHAPE[1] // 4), np.uint8))
    cli_out = tmp_path / "cli.tif"
    model_path = tmp_path / "m.json"
    assert vhr_main(["--moving-image", str(m), "--fixed-image", str(f), "--output-image", str(cli_out),
                     "--like", str(like), "--model-out", str(model_path)]) == 0
    capsys.readouterr()
    model = rastalign.load_model(model_path)
    moving = rioxarray.open_rasterio(m, chunks=100)
    aligned = moving.coreg.apply(model, grid=rioxarray.open_rasterio(like))
    cli = rioxarray.open_rasterio(cli_out)
    assert aligned.shape == cli.shape
    assert np.array_equal(aligned.values, cli.values)
    written = tmp_path / "acc.tif"
    aligned.coreg.to_raster(written)
    with rasterio.open(written) as a, rasterio.open(cli_out) as b:
        assert np.array_equal(a.read(), b.read())
        assert a.block_shapes == b.block_shapes and a.profile["compress"] == "deflate" and a.crs == b.crs
        assert a.transform == b.transform and a.nodata == b.nodata
        tagged = rastalign.AlignmentModel.from_json(a.tags()["RASTALIGN_MODEL"])
        assert np.array_equal(tagged.affine, model.affine) and tagged.output_shape == model.output_shape


def test_an_array_no_longer_holding_its_files_pixels_is_aligned_from_its_own(pair):
    """xarray keeps the first array's source through a concatenation and a selection, and through item
    assignment: the accessor estimates from the array's own pixels then, never from the file its encoding names
    (which aligned the reference onto itself here: an identity model with a passing quality check)."""
    from rastalign.io.arrays import array_info, file_backed

    folder, m, f = pair
    moving = rioxarray.open_rasterio(m, chunks=256)
    reference = rioxarray.open_rasterio(f, chunks=256)
    swapped = xr.concat([reference, moving], dim="band").isel(band=[2, 3])  # moving's pixels
    assert swapped.encoding["source"] == str(f)
    want = moving.coreg.estimate(reference)
    got = swapped.coreg.estimate(reference)
    gx, gy = np.meshgrid(np.arange(32, 480, 32.0), np.arange(32, 480, 32.0))
    assert np.abs(np.subtract(got(gx, gy), want(gx, gy))).max() < 0.01
    assert file_backed(moving, array_info(moving)) == str(m)  # an untouched array still reads its file
    edited = moving.copy()
    edited[:, :64, :64] = 0  # masked by hand: the file no longer says what the array holds
    assert edited.encoding["source"] == str(m) and file_backed(edited, array_info(edited)) is None


def test_an_aligned_array_is_chunked_as_its_source_with_no_sliver(tmp_path):
    """Opened with chunks=256 on a 300 x 530 grid, the moving array has chunks (256, 44) x (256, 256, 18); the
    aligned array keeps the size and folds the slivers (44 and 18 px, under a quarter of a chunk) into their
    neighbours. The pixels are those of any other chunking."""
    m, f, _ = write_pair(tmp_path, shape=(300, 530), shift=(2.5, -1.75), seed=4)
    moving, reference = rioxarray.open_rasterio(m, chunks=256), rioxarray.open_rasterio(f, chunks=256)
    model = moving.coreg.estimate(reference)
    aligned = moving.coreg.apply(model)
    assert aligned.chunks[1:] == ((300,), (256, 274))
    other = moving.coreg.apply(model, chunks=(128, 96))
    assert other.chunks[1:] == ((128, 128, 44), (96,) * 5 + (50,))  # as asked, slivers included
    np.testing.assert_array_equal(aligned.values, other.values)


def test_python_errors_name_the_python_keywords_too(pair, tmp_path):
    folder, m, f = pair
    aligned = rioxarray.open_rasterio(m, chunks=256).coreg.align(rioxarray.open_rasterio(f, chunks=256))
    (tmp_path / "exists.tif").write_bytes(b"")
    with pytest.raises(rastalign.OutputError, match=r"overwrite=True from Python"):
        aligned.coreg.to_raster(tmp_path / "exists.tif")
    with pytest.raises(rastalign.InputError, match=r"to_raster's format= from Python"):
        aligned.coreg.to_raster(tmp_path / "aligned.png")
    assert (tmp_path / "exists.tif").read_bytes() == b"" and not (tmp_path / "aligned.png").exists()


def test_a_computed_array_is_estimated_and_aligned_without_writing_any_file(pair, monkeypatch):
    """A dask-backed array that no file holds (here the moving image's bands recombined) is estimated from its
    own chunks: no temporary file, no GeoTIFF or FITS is written on the way (the accessor used to write such
    arrays to temporary GeoTIFFs, on a cluster the client's own disk), and the result is that of the same
    pixels saved to a file first."""
    import tempfile

    import rasterio
    from astropy.io import fits

    folder, m, f = pair
    moving = rioxarray.open_rasterio(m, chunks=128)
    reference = rioxarray.open_rasterio(f, chunks=128)
    computed = (moving.astype("float32") * 0.5 + 10.0).astype("uint16")  # arithmetic: not the file's pixels
    saved = folder / "computed.tif"
    if not saved.exists():
        computed.rio.to_raster(saved)
    from_file = rioxarray.open_rasterio(saved, chunks=128).coreg.align(reference).values

    made = []

    def refuse(name):
        def record(*args, **kwargs):
            made.append((name, args[:1]))
            raise AssertionError(f"{name} called while aligning an array")
        return record

    real_open = rasterio.open
    monkeypatch.setattr(rasterio, "open", lambda fp, mode="r", *a, **k: refuse("rasterio.open(w)")(fp)
                        if mode != "r" else real_open(fp, mode, *a, **k))
    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryDirectory"):
        monkeypatch.setattr(tempfile, name, refuse(f"tempfile.{name}"))
    monkeypatch.setattr(fits.HDUList, "writeto", refuse("fits writeto"))
    monkeypatch.setattr(fits.PrimaryHDU, "writeto", refuse("fits writeto"))
    model = computed.coreg.estimate(reference)
    aligned = computed.coreg.align(reference)
    assert isinstance(aligned.data, da.Array)
    values = aligned.values
    assert made == []
    assert model.output_shape == SHAPE
    np.testing.assert_array_equal(values, from_file)
