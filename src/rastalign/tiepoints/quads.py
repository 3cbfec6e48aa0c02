"""Quad matching of two detection lists: invariant hashes, voting, verification by cross-match.

A *quad* is four detections at least ``min_quad_sep`` px apart, taken among the
``n_quad_det`` brightest of each of ``sub_tile x sub_tile`` tiles. Its hash is the six
pairwise distances divided by the largest, listed in a canonical point order (points
sorted by their summed distance to the other three): invariant to translation,
rotation, scale **and flip**, and the canonical order gives the point correspondence.
Hash pairs closer than ``max_quad_hash_dist`` give candidate affines (4-point fits);
candidates vote for each other (agreeing transforms), and the most supported are
verified by cross-matching all detections (nearest neighbour within
``max_match_dist``, no second neighbour within ``2 * max_match_dist``, one-to-one),
refitted and re-matched. Everything is deterministic (no random draws).
Coordinates are 0-based pixels ``(x, y)``.
"""
from __future__ import annotations

import functools
import itertools
import logging
import math

import numpy as np

from rastalign.errors import AlignmentError
from rastalign.geometry.affine import apply_affine, fit_affine

log = logging.getLogger(__name__)

PAIRS = np.array([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])


def subtile_groups(xy, shape, n_quad_det, sub_tile, edge_buffer):
    """Indices (into ``xy``, which is sorted brightest first) of the brightest per sub-tile."""
    ny, nx = shape
    ok = ((xy[:, 0] >= edge_buffer) & (xy[:, 0] <= nx - 1 - edge_buffer) &
          (xy[:, 1] >= edge_buffer) & (xy[:, 1] <= ny - 1 - edge_buffer))
    tx = np.clip((xy[:, 0] / nx * sub_tile).astype(int), 0, sub_tile - 1)
    ty = np.clip((xy[:, 1] / ny * sub_tile).astype(int), 0, sub_tile - 1)
    groups = []
    for j in range(sub_tile):
        for i in range(sub_tile):
            idx = np.flatnonzero(ok & (tx == i) & (ty == j))[:n_quad_det]
            groups.append(idx)
    return groups


def quad_hash(pts):
    """Canonical order and hash of quads ``pts`` (m, 4, 2) -> (order (m, 4), hash (m, 6), dmax)."""
    diff = pts[:, :, None, :] - pts[:, None, :, :]
    dist = np.sqrt((diff ** 2).sum(-1))  # (m, 4, 4)
    order = np.argsort(dist.sum(-1), axis=1, kind="stable")
    dist = np.take_along_axis(np.take_along_axis(dist, order[:, :, None], 1), order[:, None, :], 2)
    d6 = dist[:, PAIRS[:, 0], PAIRS[:, 1]]
    dmax = d6.max(1)
    return order, d6 / dmax[:, None], dmax, d6.min(1)


@functools.lru_cache(maxsize=8)
def _combinations(n):
    """Every 4-subset of ``range(n)`` (in :func:`itertools.combinations` order), as an (m, 4) array."""
    return np.array(list(itertools.combinations(range(n), 4)), dtype=np.int64).reshape(-1, 4)


def build_quads(xy, shape, n_quad_det=20, sub_tile=1, min_quad_sep=50.0, quad_edge_buffer=0.0):
    """Quads of the brightest detections: returns ``(quads (m, 4) indices in canonical order, hashes (m, 6))``."""
    xy = np.asarray(xy, float)
    quads = []
    for idx in subtile_groups(xy, shape, int(n_quad_det), int(sub_tile), float(quad_edge_buffer)):
        if len(idx) >= 4:
            quads.append(idx[_combinations(len(idx))])
    if not quads:
        return np.zeros((0, 4), np.int64), np.zeros((0, 6))
    quads = np.concatenate(quads)
    order, h, _, dmin = quad_hash(xy[quads])
    keep = dmin >= float(min_quad_sep)
    return np.take_along_axis(quads, order, 1)[keep], h[keep]


def _batch_affine(src, dst):
    """Least-squares affines for batches of 4-point correspondences (m, 4, 2) -> (m, 2, 3), rms."""
    a = np.concatenate([src, np.ones(src.shape[:2] + (1,))], axis=2)  # (m, 4, 3)
    at = np.transpose(a, (0, 2, 1))
    sol = np.linalg.solve(at @ a + 1e-9 * np.eye(3), at @ dst)  # (m, 3, 2)
    res = a @ sol - dst
    return np.transpose(sol, (0, 2, 1)), np.sqrt((res ** 2).sum(-1).mean(-1))


def cross_match(xy_in_tmp, tmp_tree, max_match_dist, ambiguity=None):
    """Indices ``(i_src, i_tmp)`` of one-to-one matches: a source point pairs with the template point
    within ``max_match_dist`` of it when that is the only template point within ``ambiguity`` (default
    twice ``max_match_dist``) and no other source point claims it."""
    none = np.zeros(0, np.int64)
    if len(xy_in_tmp) == 0 or tmp_tree.n < 2:
        return none, none
    radius = 2.0 * max_match_dist if ambiguity is None else ambiguity
    crowd = tmp_tree.query_ball_point(xy_in_tmp, radius, return_length=True)
    dist, near = tmp_tree.query(xy_in_tmp, k=1)
    src = np.flatnonzero((crowd == 1) & (dist < max_match_dist))
    tmp = near[src]
    claims = np.bincount(tmp, minlength=tmp_tree.n)
    alone = claims[tmp] == 1
    return src[alone], tmp[alone]


def _verify(src_xy, tmp_xy, tree, m, max_match_dist, rounds=4):
    best = (np.zeros(0, np.int64), np.zeros(0, np.int64), m)
    for _ in range(rounds):
        x, y = apply_affine(m, src_xy[:, 0], src_xy[:, 1])
        i, j = cross_match(np.column_stack([x, y]), tree, max_match_dist)
        if len(i) < len(best[0]) or len(i) < 3:
            break
        best = (i, j, m)
        m = fit_affine(src_xy[i], tmp_xy[j])
    return best


def _plausible(mats, max_anisotropy=1.5, scale_range=(0.05, 20.0)):
    lin = mats[:, :, :2]
    sv = np.linalg.svd(lin, compute_uv=False)
    return (sv[:, 1] > 0) & (sv[:, 0] / np.maximum(sv[:, 1], 1e-12) < max_anisotropy) & \
        (sv[:, 0] > scale_range[0]) & (sv[:, 0] < scale_range[1])


AUTO_MIN_MATCHES, AUTO_MAX_MATCHES = 8, 100


def required_matches(min_n_match, n_src, n_tmp) -> int:
    """Matches needed to accept a candidate: ``min_n_match`` when given (spalipy's meaning), else half
    the smaller detection list, at least 8 and at most spalipy's default of 100 (``None`` = auto)."""
    if min_n_match is not None:
        return int(min_n_match)
    return int(min(AUTO_MAX_MATCHES, max(AUTO_MIN_MATCHES, math.ceil(0.5 * min(n_src, n_tmp)))))


def match_detections(src_xy, tmp_xy, src_shape, tmp_shape, n_quad_det=20, min_quad_sep=50.0,
                     max_match_dist=3.0, min_n_match=None, sub_tile=1, max_quad_cand=10, patience_quad_cand=2,
                     max_quad_hash_dist=0.005, quad_edge_buffer=0.0):
    """Match source to template detections (both (n, 2), brightest first).

    Returns ``(i_src, i_tmp, affine_src_to_tmp, info)``. Raises
    :class:`AlignmentError` naming the counts when no candidate reaches ``min_n_match``.
    """
    from scipy.spatial import cKDTree

    src_xy = np.asarray(src_xy, float)
    tmp_xy = np.asarray(tmp_xy, float)
    auto = min_n_match is None
    min_n_match = required_matches(min_n_match, len(src_xy), len(tmp_xy))
    info = {"n_source_det": len(src_xy), "n_template_det": len(tmp_xy)}
    for name, xy in (("source", src_xy), ("template", tmp_xy)):
        if len(xy) < 4:
            raise AlignmentError(f"too few {name} detections to build a quad: {len(xy)} (need >= 4)")
    sq, sh = build_quads(src_xy, src_shape, n_quad_det, sub_tile, min_quad_sep, quad_edge_buffer)
    tq, th = build_quads(tmp_xy, tmp_shape, n_quad_det, sub_tile, min_quad_sep, quad_edge_buffer)
    info.update(n_source_quads=len(sq), n_template_quads=len(tq))
    if len(sq) == 0 or len(tq) == 0:
        raise AlignmentError(f"no quads could be built (source {len(sq)}, template {len(tq)} quads from "
                             f"{len(src_xy)} / {len(tmp_xy)} detections; n_quad_det={n_quad_det}, "
                             f"min_quad_sep={min_quad_sep} px): lower --min-quad-sep or raise --n-quad-det")
    sdm = cKDTree(sh).sparse_distance_matrix(cKDTree(th), float(max_quad_hash_dist), output_type="ndarray")
    info["n_hash_matches"] = int(len(sdm))
    if len(sdm) == 0:
        raise AlignmentError(f"no common stars found: 0 of {len(sq)} source and {len(tq)} template quads match "
                             f"within max_quad_hash_dist={max_quad_hash_dist} ({len(src_xy)} source, "
                             f"{len(tmp_xy)} template detections)")
    sdm = sdm[np.lexsort((sdm["j"], sdm["i"], sdm["v"]))][:20000]
    mats, rms = _batch_affine(src_xy[sq[sdm["i"]]], tmp_xy[tq[sdm["j"]]])
    ok = _plausible(mats) & (rms < max_match_dist)
    mats, hd = mats[ok], sdm["v"][ok]
    if len(mats) == 0:
        raise AlignmentError(f"no common stars found: {len(sdm)} quad hash matches, none a plausible transform "
                             f"({len(src_xy)} source, {len(tmp_xy)} template detections)")
    # votes: candidates agreeing on where the source centre lands and on the linear part
    c = np.array([(src_shape[1] - 1) / 2.0, (src_shape[0] - 1) / 2.0])
    land = mats[:, :, :2] @ c + mats[:, :, 2]
    feat = np.column_stack([land / (2.0 * max_match_dist), mats[:, :, :2].reshape(-1, 4) / 0.02])
    votes = cKDTree(feat).query_ball_point(feat, 1.0, return_length=True)
    order = np.lexsort((hd, -votes))
    best = (np.zeros(0, np.int64), np.zeros(0, np.int64), None)
    tried, since = 0, 0
    tree = cKDTree(tmp_xy)
    while tried < max_quad_cand and len(order):
        k, order = order[0], order[1:]
        # candidates within one unit of this one in every feature are the same transform: never tried again
        order = order[~np.all(np.abs(feat[order] - feat[k]) < 1.0, axis=1)]
        tried += 1
        i, j, m = _verify(src_xy, tmp_xy, tree, mats[k], max_match_dist)
        log.debug("quad candidate %d (votes %d, hash dist %.4f): %d matches", tried, votes[k], hd[k], len(i))
        if len(i) > len(best[0]):
            best, since = (i, j, m), 0
        else:
            since += 1
        if len(best[0]) >= min_n_match and since >= patience_quad_cand:
            break
    info.update(n_candidates_tried=tried, n_matched=int(len(best[0])))
    if len(best[0]) < min_n_match:
        n = len(best[0])
        counts = (f"({len(src_xy)} source, {len(tmp_xy)} template detections, {len(sdm)} quad hash matches)")
        if n >= 10 and n >= 0.5 * min(len(src_xy), len(tmp_xy)):  # a real match, on a frame with few stars
            raise AlignmentError(f"too few matched stars: {n} < min_n_match={min_n_match}{' (auto)' if auto else ''} "
                                 f"{counts}; the frames do share stars: lower --min-n-match (to {n} or less) to "
                                 f"accept this match")
        raise AlignmentError(f"no common stars found: best of {tried} quad candidates matched {n} "
                             f"detections < min_n_match={min_n_match} {counts}")
    log.info("quad matching: %d matches from %d candidates (%d source / %d template quads, %d hash matches)",
             len(best[0]), tried, len(sq), len(tq), len(sdm))
    return best[0], best[1], best[2], info
