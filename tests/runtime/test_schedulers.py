"""Pixel-identical output under every scheduler and chunking, with a real LocalCluster,
and a worker killed mid-run that neither corrupts the output nor leaves a partial file."""
import os
import signal

import numpy as np
import pytest

import rastalign
from rastalign.geometry.grids import output_grid
from rastalign.io.raster import inspect_raster
from rastalign.params import WarpParams
from rastalign.pipelines.apply import apply
from rastalign.runtime.scheduler import use_scheduler
from rastalign.testing.pairs import write_pair

from conftest import process_cluster, read_tif

pytestmark = pytest.mark.slow  # subprocesses, clusters or notebook kernels: outside the inner loop


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("sched")
    moving, fixed, truth = write_pair(d, (400, 460), rotation_deg=0.4, shift=(5.2, -3.1), distortion_px=2.0,
                                      bands=2, seed=4)
    est = rastalign.estimate(str(moving), str(fixed))
    mov, fix = inspect_raster(moving), inspect_raster(fixed)
    grid = output_grid(mov, fix)
    model = est.model.with_output_grid(grid.pre, grid.shape)
    ref = d / "ref.tif"
    apply(moving, model, ref, grid, WarpParams(split_factor=0))
    return d, moving, model, grid, read_tif(ref)[0]


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """A real scheduler and two workers, each a separate process in its own empty folder on 127.0.0.1."""
    with process_cluster(tmp_path_factory) as addr:
        yield addr


def _read(path, fmt):
    if fmt == "Zarr":
        import xarray as xr
        return xr.open_zarr(path)["aligned"].values
    if fmt == "FITS":
        from astropy.io import fits
        return fits.getdata(path)
    return read_tif(path)[0]


FORMATS = {"GTiff": "tif", "COG": "cog.tif", "FITS": "fits", "Zarr": "zarr"}
RAGGED = ((37, 163, 120, 80), (1, 200, 140, 119))


@pytest.fixture(scope="module")
def references(setup):
    d, moving, model, grid, _ = setup
    refs = {}
    with use_scheduler("synchronous"):
        for fmt, sfx in FORMATS.items():
            out = d / f"ref.{sfx}"
            apply(moving, model, out, grid, WarpParams(split_factor=0))
            refs[fmt] = _read(out, fmt)
    return refs


@pytest.mark.parametrize("scheduler", ["threads", "processes", "distributed", "remote"])
def test_identical_output_every_scheduler_and_format(setup, references, remote, scheduler):
    """GeoTIFF, COG, FITS and Zarr from ragged chunks under each scheduler equal the synchronous
    single-chunk output bit for bit (the remote workers run in folders of their own)."""
    d, moving, model, grid, _ = setup
    name = remote if scheduler == "remote" else scheduler
    with use_scheduler(name, n_workers=2):
        for fmt, sfx in FORMATS.items():
            out = d / f"{scheduler}.{sfx}"
            apply(moving, model, out, grid, WarpParams(chunks=RAGGED))
            assert np.array_equal(_read(out, fmt), references[fmt]), (scheduler, fmt)
    assert not [p for p in os.listdir(d) if ".rastalign-tmp-" in p]


@pytest.fixture(scope="module")
def stars(tmp_path_factory):
    from rastalign.testing.stars import write_star_pair

    d = tmp_path_factory.mktemp("stars")
    src, tmpl, _ = write_star_pair(d, (420, 380), 300, rotation_deg=3.0, shift=(4.5, -2.5), seed=6)
    return d, src, tmpl


@pytest.mark.parametrize("scheduler", ["synchronous", "processes", "distributed", "remote"])
def test_align_fits_identical_under_every_scheduler(stars, remote, scheduler):
    from astropy.io import fits

    from rastalign import align_fits

    d, src, tmpl = stars
    ref = d / "ref.fits"
    if not ref.exists():
        align_fits(src, ref, tmpl, scheduler="threads", min_n_match=30, split_factor=0)
    out = d / f"{scheduler}.fits"
    name = remote if scheduler == "remote" else scheduler
    align_fits(src, out, tmpl, scheduler=name, min_n_match=30, chunks=RAGGED[::-1] and ((100, 150, 170), (33, 347)),
               n_workers=2, overwrite=True)
    assert np.array_equal(fits.getdata(out), fits.getdata(ref), equal_nan=True)
    assert fits.getheader(out) == fits.getheader(ref)


def test_align_fits_unreachable_scheduler_is_one_line(stars, tmp_path):
    import subprocess
    import sys

    d, src, tmpl = stars
    for cmd in (["align-fits", src, tmp_path / "o.fits", "-tf", tmpl], ["align-fits-simple", src, tmp_path / "o.fits", tmpl]):
        mod = "main" if cmd[0] == "align-fits" else "main_simple"
        r = subprocess.run([sys.executable, "-c", f"import sys; from rastalign.cli.fits import {mod}; "
                            f"sys.exit({mod}(sys.argv[1:]))", *map(str, cmd[1:]), "--scheduler", "tcp://127.0.0.1:1"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "cannot reach the dask scheduler at tcp://127.0.0.1:1" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "o.fits").exists()


def test_killed_worker_does_not_corrupt_output(setup):
    from distributed import Client, LocalCluster

    import rastalign.sinks.tiff as tiff  # the client maps each finished block's tiles to file indexes

    d, moving, model, grid, expected = setup
    out = d / "killed.tif"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed = []
        orig = tiff.tile_index

        def index_and_kill(*args):
            if not killed:  # once the first block lands, kill a worker mid-run
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            return orig(*args)

        tiff.tile_index = index_and_kill
        try:
            try:
                apply(moving, model, out, grid, WarpParams(chunks=(64, 64)))
            except Exception as exc:  # a clear failure is acceptable, a partial file is not
                assert not out.exists(), exc
                return
        finally:
            tiff.tile_index = orig
        assert killed
        assert np.array_equal(read_tif(out)[0], expected)
    assert not [p for p in os.listdir(d) if ".rastalign-tmp-" in p]
