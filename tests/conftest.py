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
