"""Tie points re-measured at native resolution from small windows (the windows' choice and the match;
the reads and tasks are :mod:`rastalign.pipelines.refine`).

After the coarse-to-fine solve on decimated proxies, a spread-out subset of the tie
points is re-measured on the full-resolution images: a fixed window around each point
and the moving window the current model says it needs (plus the search margin and the
spline support) are read from the files, turned into the same proxy (edges or
normalised intensity) and matched by the compiled least-squares matcher. The result
has full-resolution accuracy without a second full pass over the inputs.
"""
from __future__ import annotations

import math

import numpy as np

from rastalign._kernels.bspline import lk_windows, window_coords
from rastalign._kernels.pixels import edge_proxy, equalised, normalised
from rastalign.tiepoints.pyramid import spline

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
    return edge_proxy(equalised(img, valid), valid) if use_edges else (normalised(img, valid), valid)


def _translation(x, y):
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y]])


def _window_geometry(model, centre, window, mbox=(0, 0, 0, 0)):
    """The moving coordinates (relative to ``mbox``'s corner) of the window's pixels through ``model``."""
    h = window // 2
    return model.geometry((window, window), _translation(centre[0] - h, centre[1] - h),
                          _translation(-mbox[2], -mbox[0]))


def window_boxes(points, model, window, fshape, mshape):
    """For windows at ``points`` (n, 2): an int array (n, 10), a row each: the window's centre ``(x, y)``, the
    fixed box ``(y0, y1, x0, x1)`` (with the proxy border) and the moving box the window needs through ``model``
    (the model's extremes on the window's outline, with a margin that holds the spline's support and any bulge
    of the smooth field inside); and whether both boxes stay inside their images (n,)."""
    h, pad, margin = window // 2, 2, 8
    c = np.rint(np.asarray(points, float).reshape(-1, 2)).astype(np.int64)
    fbox = np.column_stack([c[:, 1] - h - pad, c[:, 1] - h + window + pad, c[:, 0] - h - pad,
                            c[:, 0] - h + window + pad])
    edge = np.arange(-h, window - h, dtype=float)
    end = np.full(window, float(window - h - 1))
    ox = np.concatenate([edge, edge, -h + 0 * edge, end])  # the outline: top, bottom, left, right
    oy = np.concatenate([-h + 0 * edge, end, edge, edge])
    mx, my = model(c[:, :1] + ox[None, :], c[:, 1:] + oy[None, :])
    mbox = np.column_stack([np.floor(my.min(axis=1)) - margin, np.ceil(my.max(axis=1)) + margin + 1,
                            np.floor(mx.min(axis=1)) - margin, np.ceil(mx.max(axis=1)) + margin + 1]).astype(np.int64)
    inside = ((fbox[:, 0] >= 0) & (fbox[:, 2] >= 0) & (fbox[:, 1] <= fshape[0]) & (fbox[:, 3] <= fshape[1])
              & (mbox[:, 0] >= 0) & (mbox[:, 2] >= 0) & (mbox[:, 1] <= mshape[0]) & (mbox[:, 3] <= mshape[1]))
    return np.column_stack([c, fbox, mbox]), inside


def union(boxes):
    """The smallest box ``(y0, y1, x0, x1)`` holding all ``boxes`` (n, 4)."""
    return (int(boxes[:, 0].min()), int(boxes[:, 1].max()), int(boxes[:, 2].min()), int(boxes[:, 3].max()))


def measure_window(boxes, fixed, moving, model, window, use_edges):
    """Re-measure one tie point from its fixed and moving windows (``fixed(box)``/``moving(box)`` give
    ``(data, valid)``; ``boxes`` a row of :func:`window_boxes`): ``((x, y) fixed, (x, y) moving, reliability)``
    or None when the windows hold too little or the match fails. Each window gets its own proxies (their
    equalisation local to it: on the Sentinel-2 pair, proxies over a tile's windows together left a median
    of 0.104 px instead of 0.101, p95 0.307 instead of 0.289)."""
    (cx, cy), fbox, mbox = boxes[:2].tolist(), boxes[2:6].tolist(), boxes[6:].tolist()
    pad = 2  # proxy border
    fimg, fv = _proxy(*fixed(fbox), use_edges)
    fimg, fv = fimg[pad:-pad, pad:-pad], fv[pad:-pad, pad:-pad]
    if fv.mean() < 0.8:
        return None
    coef, mask = spline(*_proxy(*moving(mbox), use_edges))
    shift, ncc, ok = np.zeros((1, 2)), np.zeros(1), np.ones(1, bool)
    lk_windows(fimg, fv, coef, mask, _window_geometry(model, (cx, cy), window, mbox), np.zeros((1, 2), np.intp),
               window, model.linear[:, :2], shift, ncc, ok, 12, 2e-4)
    (sx, sy), ncc, ok = shift[0], ncc[0], ok[0]
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
    # and at each corner of the image, where the field would extrapolate, the tile nearest it holding tie
    # points and the corner tile itself (proxy windows keep half a window from the edges; a corner without
    # data only costs its read)
    centres = (tiles + 0.5) * tile
    last = (np.array([shape[1], shape[0]]) - 1) // tile
    corners = []
    for corner in ((0, 0), (shape[1], 0), (0, shape[0]), (shape[1], shape[0])):
        picked.add(int(np.argmin(np.hypot(*(centres - corner).T))))
        corners.append(np.minimum(np.array(corner) // tile, last))
    return np.unique(np.concatenate([tiles[sorted(picked)], np.array(corners, tiles.dtype)]), axis=0)


def tile_windows(tiles, n_max, window, tile=TILE):
    """Centres ``(x, y)``, shape ``(tiles, k * k, 2)``, of about ``n_max`` native windows, a ``k x k`` grid
    wholly inside each tile (``k`` up to 3): the tile is read once for all of them, so the field is sampled
    densely at no extra read."""
    k = max(1, min(3, round(math.sqrt(n_max / max(len(tiles), 1)))))
    span = max(tile - 2 * window, 0)
    offs = window + span * (np.arange(k) + 0.5) / k
    ox, oy = (v.ravel() for v in np.meshgrid(offs, offs))
    return tiles[:, None, :] * tile + np.stack([ox, oy], axis=1)[None]
