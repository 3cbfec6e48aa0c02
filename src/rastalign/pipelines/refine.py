"""Native refinement as tasks: the windows :mod:`rastalign.tiepoints.refine` chooses are read from the
files, a few file tiles per task of the active scheduler (each input read once per tile, over the box all
its windows need), and re-measured there; only the tie points come back."""
from __future__ import annotations

import logging

import dask
import numpy as np

from rastalign._kernels.pixels import validity
from rastalign.io.raster import open_dataset, read_window
from rastalign.runtime.scheduler import compute, parallelism
from rastalign.tiepoints.pyramid import TiePoints
from rastalign.tiepoints.refine import measure_window, pick_tiles, tile_windows, union, window_boxes

log = logging.getLogger(__name__)


def _piece(source, band, nodata, box):
    """What a task needs for the pixels of ``box``: a file's window, read in the task (``(path, band, nodata,
    box)``), or an array's slice, which dask computes into the task's argument (``(pixels, nodata, box)``)."""
    if getattr(source, "data", None) is not None:
        return source.pixels(band, box), source.nodata_or(nodata), box
    return str(source), band, nodata, box


def _crop(piece, datasets):
    """``crop(box) -> (data, valid)`` over the piece's box, for any box inside it (the files stay open in
    ``datasets`` for the task's other tiles)."""
    if isinstance(piece[0], str):
        path, band, nodata, box = piece
        if path not in datasets:
            datasets[path] = open_dataset(path)
        data, valid = read_window(path, box, bands=[band + 1], nodata=nodata, dataset=datasets[path])
        data = data[0]
    else:
        pixels, nodata, box = piece
        data = np.asarray(pixels)
        valid = validity(data[None], nodata)
    y0, _, x0, _ = box

    def crop(b):
        rows, cols = slice(b[0] - y0, b[1] - y0), slice(b[2] - x0, b[3] - x0)
        return data[rows, cols], valid[rows, cols]
    return crop


def _split(items, n):
    """``items`` in at most ``n`` consecutive groups of near-equal size."""
    n = max(1, min(len(items), n))
    return [items[len(items) * i // n:len(items) * (i + 1) // n] for i in range(n)] if items else []


def _tiles(tiles, model, window, use_edges):
    """Refine the windows of each tile of ``tiles`` (``(boxes, fixed piece, moving piece)`` each: one file
    tile's windows and the pixels that cover them, see :func:`_piece`): one task of the active scheduler."""
    out, datasets = [], {}
    try:
        for boxes, fixed_piece, moving_piece in tiles:
            fixed, moving = _crop(fixed_piece, datasets), _crop(moving_piece, datasets)
            out += [measure_window(b, fixed, moving, model, window, use_edges) for b in boxes]
    finally:
        for ds in datasets.values():
            ds.close()
    return out


def refine_native(model, tp: TiePoints, fixed, moving, fband, mband, fnodata, mnodata, fshape, mshape,
                  use_edges=True, window=64, n_max=256) -> TiePoints:
    """Tie points measured at native resolution in about ``n_max`` windows, a few in each of the well-spread
    file tiles that hold the best inlier tie points (:func:`pick_tiles`, :func:`tile_windows`). ``fixed`` and
    ``moving``: file paths, or :class:`~rastalign.io.arrays.ArrayRaster` sources."""
    inl = tp.inlier if tp.inlier is not None else np.ones(len(tp), bool)
    idx = np.nonzero(inl)[0]
    if len(idx) == 0:
        return tp
    chosen = tile_windows(pick_tiles(tp.fixed[idx], tp.weight[idx], window, fshape), n_max, window)
    tiles = []
    boxes, inside = window_boxes(chosen.reshape(-1, 2), model, window, fshape, mshape)
    tile_of = np.repeat(np.arange(len(chosen)), chosen.shape[1])
    boxes, tile_of = boxes[inside], tile_of[inside]
    for k in np.unique(tile_of):  # in pick_tiles' order; each input is read once per tile, over all its windows
        b = boxes[tile_of == k]
        tiles.append((b, _piece(fixed, fband, fnodata, union(b[:, 2:6])), _piece(moving, mband, mnodata,
                                                                                 union(b[:, 6:]))))
    groups = [list(g) for g in _split(tiles, 4 * parallelism())]  # a few tiles per task
    task = dask.delayed(_tiles, pure=True)
    done = compute(*[task(g, model, window, use_edges) for g in groups])
    res = [r for part in done for r in part if r is not None]
    if not res:
        return tp
    pf = np.array([r[0] for r in res], float)
    qm = np.array([r[1] for r in res], float)
    rel = np.array([r[2] for r in res], float)
    log.info("native refinement: %d of %d windows re-measured", len(res), chosen.shape[0] * chosen.shape[1])
    return TiePoints(pf, qm, rel ** 2, rel, level=np.ones(len(res)))
