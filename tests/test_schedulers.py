"""Pixel-identical output under every scheduler and chunking, with a real LocalCluster,
and a worker killed mid-run that neither corrupts the output nor leaves a partial file."""
import os
import signal

import numpy as np
import pytest

import rastalign
from rastalign.grids import output_grid
from rastalign.io.raster import inspect_raster
from rastalign.params import WarpParams
from rastalign.pipeline import apply
from rastalign.scheduler import use_scheduler
from rastalign.testing import write_pair

from conftest import read_tif


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
    apply(moving, model, ref, grid, WarpParams(scheduler="synchronous", split_factor=0))
    return d, moving, model, grid, read_tif(ref)[0]


@pytest.mark.parametrize("scheduler,split", [("threads", 0), ("threads", 1), ("threads", 2), ("threads", 3),
                                             ("threads", 4), ("processes", 3), ("synchronous", 4),
                                             ("distributed", 3)])
def test_identical_output(setup, scheduler, split):
    d, moving, model, grid, expected = setup
    out = d / f"out_{scheduler}_{split}.tif"
    with use_scheduler(scheduler, n_workers=2):
        apply(moving, model, out, grid, WarpParams(scheduler=scheduler, split_factor=split, n_workers=2))
    assert np.array_equal(read_tif(out)[0], expected)


def test_killed_worker_does_not_corrupt_output(setup):
    from distributed import Client, LocalCluster

    import rastalign.io.tiff as tiff

    d, moving, model, grid, expected = setup
    out = d / "killed.tif"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed = []
        orig = tiff.TileAssembler.add

        def add_and_kill(self, index, data):
            orig(self, index, data)
            if not killed:  # after the first tile lands, kill a worker mid-run
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        tiff.TileAssembler.add = add_and_kill
        try:
            try:
                apply(moving, model, out, grid, WarpParams(scheduler="distributed", chunks=(64, 64)))
            except Exception as exc:  # a clear failure is acceptable, a partial file is not
                assert not out.exists(), exc
                return
        finally:
            tiff.TileAssembler.add = orig
        assert killed
        assert np.array_equal(read_tif(out)[0], expected)
    assert not [p for p in os.listdir(d) if ".rastalign-tmp-" in p]
