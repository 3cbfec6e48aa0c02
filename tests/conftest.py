import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(os.environ.get("RASTALIGN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir():
    if not DATA.is_dir():
        pytest.skip(f"real test data folder absent: {DATA}")
    return DATA


def write_tif(path, data, transform=(0.5, 0, 500000.0, 0, -0.5, 5800000.0), crs="EPSG:32633", nodata=None):
    import rasterio
    from affine import Affine

    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=Affine(*transform), nodata=nodata) as ds:
        ds.write(data)
    return path


def read_tif(path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.descriptions


class ArraySource:
    """An in-memory source with an explicit validity mask (a :mod:`rastalign.io.sources` look-alike)."""

    def __init__(self, data, valid):
        self.data, self.valid = data, valid
        self.shape, self.n_bands = data.shape[1:], data.shape[0]

    def read(self, box):
        y0, y1, x0, x1 = box
        return self.data[:, y0:y1, x0:x1], self.valid[y0:y1, x0:x1]


def warp_chunked(data, valid, model, shape, resampling, dtype, nodata, scheduler="threads", **chunking):
    """The lazy warp of an array with a mask, computed on ``scheduler``; also checks its chunk grid."""
    from rastalign.params import WarpParams
    from rastalign.warp.graph import lazy_warp

    arr = lazy_warp(ArraySource(data, valid), model, shape, WarpParams(resampling=resampling, **chunking), dtype,
                    nodata)
    if isinstance(chunking.get("chunks", (0,))[0], tuple):
        assert arr.chunks[1:] == tuple(chunking["chunks"])
    return arr.compute(scheduler=scheduler)


@contextlib.contextmanager
def process_cluster(tmp_path_factory, n_workers=2):
    """A real ``dask scheduler`` and ``n_workers`` ``dask worker`` processes on 127.0.0.1, each in an empty
    folder of its own (nothing can be read through a shared working folder); yields the address."""
    import socket
    import subprocess
    import sys

    from distributed import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"],
                              cwd=tmp_path_factory.mktemp("scheduler"), **quiet)]
    try:
        for k in range(n_workers):
            wd = tmp_path_factory.mktemp(f"worker{k}")
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1",
                                           "--no-dashboard", "--local-directory", str(wd)], cwd=wd, **quiet))
        with Client(addr, timeout="30s") as c:
            c.wait_for_workers(n_workers, timeout=60)
        yield addr
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
