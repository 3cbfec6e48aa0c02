"""Streaming blocks into a file: the blocks of the lazy warp encoded on the workers and written here in
order, with bounded memory (:func:`consume`), and the tile layout of tiled outputs."""
from __future__ import annotations

import time

import numpy as np

from rastalign.runtime import progress
from rastalign.runtime.scheduler import compute, parallelism
from rastalign.warp.plan import blocks


def tile_size(shape) -> int:
    """Square tile side: 512, or smaller (a multiple of 16) for small images."""
    m = min(int(shape[0]), int(shape[1]))
    return next((t for t in (512, 256, 128, 64, 32) if m >= t), 16)


def fill_value(dtype, nodata):
    return 0 if nodata is None or (np.isnan(nodata) and np.dtype(dtype).kind != "f") else nodata


def aligned_to(arr, step):
    """``arr`` rechunked so that every block starts on a multiple of ``step`` (a no-op when it does)."""
    def sizes(n):
        return tuple(min(step, n - s) for s in range(0, n, step))

    want = (arr.chunks[0], sizes(arr.shape[1]), sizes(arr.shape[2]))
    return arr if want == arr.chunks else arr.rechunk(want)


def consume(arr, encode, write):
    """``write(box, encode(block))`` for every block of ``arr``: ``encode`` runs on the workers,
    ``write`` here, in row-major block order, at most a few blocks per worker thread in flight."""
    import dask

    t0 = time.perf_counter()
    delayed = arr.to_delayed()
    task = dask.delayed(encode, pure=True)
    items = list(blocks(arr))
    batch = 2 * parallelism()
    for k in range(0, len(items), batch):
        part = items[k:k + batch]
        results = compute(*[task(delayed[idx], box) for idx, box in part])
        for (_, box), res in zip(part, results):
            write(box, res)
        progress.blocks(k + len(part), len(items))
    return time.perf_counter() - t0

