"""Refine tie points at native resolution, reading only small windows around them.

After the coarse-to-fine solve on decimated proxies, a spread-out subset of the tie
points is re-measured on the full-resolution images: a fixed window around each point
and the moving window the current model says it needs (plus the search margin and the
spline support) are read from the files, turned into the same proxy (edges or
normalised intensity) and matched by the compiled least-squares matcher. The result
has full-resolution accuracy without a second full pass over the inputs.
"""
from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage

from ._bspline import lk_bspline3
from .io.raster import open_dataset, read_window
from .proxy import edge_proxy, erode3, normalised
from .solve import TiePoints

log = logging.getLogger(__name__)
TILE = 512  # the tile side of COGs and of our own GeoTIFFs: what a range request fetches at least
N_TILES = 64  # tiles the native windows may touch: a small fraction of a large scene


def pick_spread(points, weights, n_max, cell):
    """Best-weighted point per grid cell, at most ``n_max`` cells (deterministic)."""
    keys = np.floor(points / cell).astype(np.int64)
    order = np.lexsort((-weights, keys[:, 1], keys[:, 0]))
    seen, out = set(), []
    for i in order:
        k = (keys[i, 0], keys[i, 1])
        if k not in seen:
            seen.add(k)
            out.append(i)
    out = np.array(sorted(out, key=lambda i: -weights[i]))[:n_max]
    return np.sort(out)


def _proxy(img, valid, use_edges):
    img = img.astype(np.float32)
    return edge_proxy(img, valid) if use_edges else (normalised(img, valid), valid)


def _read(cache, path, box, band, nodata):
    """Window read through a dataset kept open for the task (GDAL's block cache then serves
    neighbouring windows without decompressing their tiles again)."""
    if path not in cache:
        cache[path] = open_dataset(path)
    return read_window(path, box, bands=[band + 1], nodata=nodata, dataset=cache[path])


def _batch(points, *args):
    """Refine the windows at ``points``: one task of the active scheduler."""
    cache = {}
    try:
        return [_one(p, cache, *args) for p in points]
    finally:
        for ds in cache.values():
            ds.close()


def _one(p, cache, model, fixed_path, moving_path, fband, mband, fnodata, mnodata, fshape, mshape, window, use_edges):
    h = window // 2
    cx, cy = int(round(p[0])), int(round(p[1]))
    pad = 2  # proxy border
    fy0, fx0 = cy - h - pad, cx - h - pad
    fy1, fx1 = fy0 + window + 2 * pad, fx0 + window + 2 * pad
    if fy0 < 0 or fx0 < 0 or fy1 > fshape[0] or fx1 > fshape[1]:
        return None
    fdata, fval = _read(cache, fixed_path, (fy0, fy1, fx0, fx1), fband, fnodata)
    fimg, fv = _proxy(fdata[0], fval, use_edges)
    fimg, fv = fimg[pad:-pad, pad:-pad], fv[pad:-pad, pad:-pad]
    if fv.mean() < 0.8:
        return None
    gy, gx = np.mgrid[cy - h:cy - h + window, cx - h:cx - h + window].astype(float)
    mx, my = model(gx, gy)
    margin = 8
    my0, my1 = int(math.floor(my.min())) - margin, int(math.ceil(my.max())) + margin + 1
    mx0, mx1 = int(math.floor(mx.min())) - margin, int(math.ceil(mx.max())) + margin + 1
    if my0 < 0 or mx0 < 0 or my1 > mshape[0] or mx1 > mshape[1]:
        return None
    mdata, mval = _read(cache, moving_path, (my0, my1, mx0, mx1), mband, mnodata)
    mimg, mv = _proxy(mdata[0], mval, use_edges)
    coef = ndimage.spline_filter(mimg.astype(np.float64), order=3, mode="mirror")
    mask = erode3(erode3(mv))
    lin = model.linear[:, :2]
    sx, sy, ncc, ok = lk_bspline3(np.ascontiguousarray(fimg, np.float64), np.ascontiguousarray(fv), coef, mask,
                                  np.ascontiguousarray(mx - mx0), np.ascontiguousarray(my - my0),
                                  np.ascontiguousarray(lin), 0.0, 0.0, 12, 2e-4)
    if not ok or abs(sx) > 2 or abs(sy) > 2:
        return None
    q = model(np.array([cx + sx]), np.array([cy + sy]))
    return (cx, cy), (float(q[0][0]), float(q[1][0])), max(ncc, 0.0)


def pick_tiles(points, weights, window, shape, tile=TILE, n_tiles=N_TILES):
    """About ``n_tiles`` well-spread ``tile``-px file tiles ``(tx, ty)`` holding the best-weighted tie points:
    over a network every tile touched is fetched whole, so the native windows share a few tiles instead of
    touching every one. Tiles whose tie points lie a window inside them are preferred (a window there reads
    that tile alone; the moving window lies a few pixels away)."""
    keys = np.floor(points / tile).astype(np.int64)
    inner = np.all((points - keys * tile >= window) & ((keys + 1) * tile - points > window), axis=1)
    if inner.sum() >= 16:
        keys, weights = keys[inner], weights[inner]
    tiles, inverse = np.unique(keys, axis=0, return_inverse=True)
    score = np.bincount(inverse.ravel(), weights=weights, minlength=len(tiles))
    cell = max(float(tile), math.sqrt(shape[0] * shape[1] / n_tiles))
    picked = set(pick_spread((tiles + 0.5) * tile, score, n_tiles, cell).tolist())
    # and the tile nearest each corner of the image: the field is pinned where it would extrapolate
    centres = (tiles + 0.5) * tile
    for corner in ((0, 0), (shape[1], 0), (0, shape[0]), (shape[1], shape[0])):
        picked.add(int(np.argmin(np.hypot(*(centres - corner).T))))
    return tiles[sorted(picked)]


def tile_windows(tiles, n_max, window, tile=TILE):
    """Centres ``(x, y)`` of about ``n_max`` native windows, a ``k x k`` grid wholly inside each tile (``k`` up
    to 3): the tile is decoded once for all of them, so the field is sampled densely at no extra read."""
    k = max(1, min(3, round(math.sqrt(n_max / max(len(tiles), 1)))))
    span = max(tile - 2 * window, 0)
    offs = window + span * (np.arange(k) + 0.5) / k
    ox, oy = (v.ravel() for v in np.meshgrid(offs, offs))
    return (tiles[:, None, :] * tile + np.stack([ox, oy], axis=1)[None]).reshape(-1, 2)


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
    import dask

    from .scheduler import parallelism

    # tile by tile (pick_tiles' order), so a task's windows share the tiles its open datasets have decoded
    groups = [g for g in np.array_split(chosen, min(len(chosen), 4 * parallelism())) if len(g)]
    task = dask.delayed(_batch, pure=True)
    done = dask.compute(*[task(g, *args) for g in groups])
    res = [r for part in done for r in part if r is not None]
    if not res:
        return tp
    pf = np.array([r[0] for r in res], float)
    qm = np.array([r[1] for r in res], float)
    rel = np.array([r[2] for r in res], float)
    log.info("native refinement: %d of %d windows re-measured", len(res), len(chosen))
    return TiePoints(pf, qm, rel ** 2, rel, level=np.ones(len(res)))
