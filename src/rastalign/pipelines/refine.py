"""Native refinement as tasks: the windows :mod:`rastalign.tiepoints.refine` chooses are read from the
files, a few file tiles per task of the active scheduler (each input read once per tile, over the box all
its windows need), and re-measured there; only the tie points come back."""
from __future__ import annotations

import logging

import dask
import numpy as np

from rastalign.io.raster import open_dataset, read_window
from rastalign.runtime.scheduler import parallelism
from rastalign.tiepoints.pyramid import TiePoints
from rastalign.tiepoints.refine import measure_window, pick_tiles, tile_windows, window_boxes

log = logging.getLogger(__name__)


def _read_union(datasets, path, boxes, band, nodata):
    """One read of the box covering ``boxes`` (through the task's open dataset of ``path``):
    ``crop(box) -> (data, valid)`` of any of them."""
    if path not in datasets:
        datasets[path] = open_dataset(path)
    y0, x0 = min(b[0] for b in boxes), min(b[2] for b in boxes)
    y1, x1 = max(b[1] for b in boxes), max(b[3] for b in boxes)
    data, valid = read_window(path, (y0, y1, x0, x1), bands=[band + 1], nodata=nodata, dataset=datasets[path])

    def crop(b):
        rows, cols = slice(b[0] - y0, b[1] - y0), slice(b[2] - x0, b[3] - x0)
        return data[0, rows, cols], valid[rows, cols]
    return crop


def _tiles(tiles, model, fixed_path, moving_path, fband, mband, fnodata, mnodata, fshape, mshape, window,
           use_edges):
    """Refine the windows of each tile in ``tiles`` (a list of centre arrays, one per file tile): one task of
    the active scheduler. Each input is read once per tile, over the box all its windows need."""
    out, datasets = [], {}
    try:
        for points in tiles:
            boxes = [b for b in (window_boxes(p, model, window, fshape, mshape) for p in points) if b is not None]
            if not boxes:
                continue
            fixed = _read_union(datasets, fixed_path, [b[1] for b in boxes], fband, fnodata)
            moving = _read_union(datasets, moving_path, [b[2] for b in boxes], mband, mnodata)
            out += [measure_window(b, fixed, moving, model, window, use_edges) for b in boxes]
    finally:
        for ds in datasets.values():
            ds.close()
    return out


def refine_native(model, tp: TiePoints, fixed_path, moving_path, fband, mband, fnodata, mnodata, fshape, mshape,
                  use_edges=True, window=64, n_max=256) -> TiePoints:
    """Tie points measured at native resolution in about ``n_max`` windows, a few in each of the well-spread
    file tiles that hold the best inlier tie points (:func:`pick_tiles`, :func:`tile_windows`)."""
    inl = tp.inlier if tp.inlier is not None else np.ones(len(tp), bool)
    idx = np.nonzero(inl)[0]
    if len(idx) == 0:
        return tp
    chosen = tile_windows(pick_tiles(tp.fixed[idx], tp.weight[idx], window, fshape), n_max, window)
    args = (model, str(fixed_path), str(moving_path), fband, mband, fnodata, mnodata, fshape, mshape, window,
            use_edges)
    # tiles in pick_tiles' order, a few per task
    groups = [list(g) for g in np.array_split(chosen, min(len(chosen), 4 * parallelism())) if len(g)]
    task = dask.delayed(_tiles, pure=True)
    done = dask.compute(*[task(g, *args) for g in groups])
    res = [r for part in done for r in part if r is not None]
    if not res:
        return tp
    pf = np.array([r[0] for r in res], float)
    qm = np.array([r[1] for r in res], float)
    rel = np.array([r[2] for r in res], float)
    log.info("native refinement: %d of %d windows re-measured", len(res), chosen.shape[0] * chosen.shape[1])
    return TiePoints(pf, qm, rel ** 2, rel, level=np.ones(len(res)))
