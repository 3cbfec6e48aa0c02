"""Star detection with ``sep``: background, extraction and windowed centroids, per chunk.

Large frames are cut into tiles; each tile is read with an ``overlap`` margin, its
detections are kept only when their centre falls in the tile's *core*, so every source
is found once (de-duplication by ownership) and no tile ever needs the whole frame.
Positions are 0-based pixels, ``x`` = column, ``y`` = row (pixel centres at integers).
Detections whose aperture touches an invalid pixel or runs off the frame are dropped:
their centroids are biased (a star cut by the frame edge moves ~0.1-0.3 px inwards) and
would bend the distortion field where it has least support.
"""
from __future__ import annotations

import logging

import numpy as np

from rastalign.errors import AlignmentError, InputError
from rastalign.runtime.pools import process_pool
from rastalign.runtime.scheduler import active_client, compute, each_in_threads
from rastalign.tiepoints.detections import detection_table

log = logging.getLogger(__name__)

FWHM_FROM_AB = 2.0 * np.sqrt(np.log(2.0))  # spalipy: fwhm = 2 sqrt(ln2 (a^2 + b^2))
APER_HASMASKED = 0x0020
UNIFORM_RMS = 0.1  # noise maps flatter than this (p99 - p1, relative) are thresholded with one RMS
MIN_TILES_FOR_PROCESSES = 4  # below this, starting worker processes costs more than it saves
APER_RADIUS_FWHM = 2.0  # a detection must have this many FWHM of valid, in-frame pixels around it


def extract(data, valid=None, sep_thresh=5.0, origin=(0, 0), minarea=5, bw=64):
    """Detect sources in one block; returns the raw columns as a dict of arrays.

    ``data`` (rows, cols) float; ``valid`` its validity (True = usable); ``origin``
    ``(row, col)`` of the block in the full frame (added to the positions).
    """
    import sep

    data = np.ascontiguousarray(data, dtype=np.float32)
    mask = None if valid is None or valid.all() else ~np.ascontiguousarray(valid, bool)
    empty = {k: np.zeros(0) for k in ("x", "y", "flux", "fwhm")}
    empty["flag"] = np.zeros(0, np.int64)
    if mask is not None:
        if mask.all():
            return empty
        data = np.where(mask, 0.0, data).astype(np.float32)
    if min(data.shape) < 8:
        return empty
    b = max(8, min(bw, min(data.shape) // 2))
    bkg = sep.Background(data, mask=mask, bw=b, bh=b, fw=3, fh=3)
    sub = data - bkg.back()
    rms = bkg.rms()
    lo, med, hi = np.percentile(rms[::8, ::8], [1, 50, 99])
    if hi - lo <= UNIFORM_RMS * med:  # uniform noise: a scalar threshold extracts ~2x faster, same sources
        rms = float(med)
    if mask is not None:
        sub[mask] = 0.0
    sep.set_extract_pixstack(max(300000, data.size // 4))
    sep.set_sub_object_limit(4096)
    try:
        obj = sep.extract(sub, float(sep_thresh), err=rms, mask=mask, minarea=minarea)
    except Exception as exc:  # noqa: BLE001 - sep raises plain Exceptions on overflows
        raise InputError(f"source extraction failed ({exc}); raise --sep-thresh") from None
    if len(obj) == 0:
        return empty
    x, y = obj["x"].astype(float), obj["y"].astype(float)
    fwhm = FWHM_FROM_AB * np.sqrt(obj["a"] ** 2 + obj["b"] ** 2)
    flag = obj["flag"].astype(np.int64)
    sig = np.clip(fwhm / 2.3548, 0.5, 20.0)
    xw, yw, wflag = sep.winpos(sub, x, y, sig, mask=mask)
    good = (wflag == 0) & np.isfinite(xw) & np.isfinite(yw) & (np.hypot(xw - x, yw - y) < 2 * sig + 1)
    x = np.where(good, xw, x)
    y = np.where(good, yw, y)
    if mask is not None:
        _, _, aflag = sep.sum_circle(sub, x, y, np.maximum(APER_RADIUS_FWHM * fwhm, 3.0), mask=mask)
        flag = flag | (aflag & APER_HASMASKED)
    keep = (flag & APER_HASMASKED) == 0
    return {"x": x[keep] + origin[1], "y": y[keep] + origin[0], "flux": obj["flux"][keep].astype(float),
            "fwhm": fwhm[keep], "flag": flag[keep]}


def _tiles(shape, chunk):
    ny, nx = shape
    for y0 in range(0, ny, chunk):
        for x0 in range(0, nx, chunk):
            yield y0, min(y0 + chunk, ny), x0, min(x0 + chunk, nx)


def _squeeze(data, valid):
    data = np.asarray(data)
    return (data[0] if data.ndim == 3 else data), np.asarray(valid, bool)


def _tile_job(read, shape, core, overlap, sep_thresh):
    y0, y1, x0, x1 = core
    ny, nx = shape
    box = (max(y0 - overlap, 0), min(y1 + overlap, ny), max(x0 - overlap, 0), min(x1 + overlap, nx))
    data, valid = _squeeze(*read(box))
    d = extract(data, valid, sep_thresh, origin=(box[0], box[2]))
    own = (d["x"] >= x0 - 0.5) & (d["x"] < x1 - 0.5) & (d["y"] >= y0 - 0.5) & (d["y"] < y1 - 0.5)
    # a source whose aperture runs off the frame has a centroid pulled inwards: drop it,
    # as sources touching invalid pixels are dropped
    r = np.maximum(APER_RADIUS_FWHM * d["fwhm"], 3.0)
    inside = (d["x"] - r >= -0.5) & (d["x"] + r <= nx - 0.5) & (d["y"] - r >= -0.5) & (d["y"] + r <= ny - 0.5)
    return {k: v[own & inside] for k, v in d.items()}, int(valid.sum())


def _run_tiles(read, shape, cores, overlap, sep_thresh, workers, processes):
    """Tiles as tasks of the active ``distributed`` cluster when the reader can travel
    (``processes``); else in forked worker *processes* when the process has one thread (sep
    holds the GIL, so threads do not run extraction in parallel), else in threads; serially for
    one worker or few tiles. Same tiles, same results."""
    jobs = [(read, shape, c, overlap, sep_thresh) for c in cores]
    if processes and active_client() is not None:  # a dask cluster: every tile is a task of its workers
        import dask

        task = dask.delayed(_tile_job, pure=True)
        return list(compute(*[task(*a) for a in jobs]))
    if workers <= 1 or len(cores) < MIN_TILES_FOR_PROCESSES:
        return [_tile_job(*a) for a in jobs]
    # spawn would re-import the caller's __main__, which breaks unguarded scripts: fork, where it is safe
    if processes:
        with process_pool(min(workers, len(cores))) as pool:
            if pool is not None:
                log.debug("detection: %d tiles in %d worker processes", len(cores), min(workers, len(cores)))
                return list(pool.map(_tile_job, *zip(*jobs)))
    return each_in_threads(lambda k: _tile_job(*jobs[k]), len(jobs), workers)


def detect(read, shape, sep_thresh=5.0, chunk=2048, overlap=48, threads=2, name="image", processes=False):
    """Detect over a whole frame read through ``read(box) -> (data, valid)``, tile by tile.

    ``read`` returns 2-D or (1, rows, cols) arrays; with ``processes=True`` (for a
    picklable ``read`` such as :meth:`rastalign.io.sources.FitsSource.read`) ``threads`` worker
    processes share the tiles of a large frame. Raises :class:`InputError` when the
    frame has no valid pixel. Returns a
    normal-form detection table (see :mod:`rastalign.tiepoints.detections`), sorted by flux
    (brightest first).
    """
    cores = list(_tiles(shape, chunk))
    parts = _run_tiles(read, shape, cores, overlap, sep_thresh, int(threads or 1), processes)
    n_valid = sum(p[1] for p in parts)
    if n_valid == 0:
        raise InputError(f"{name} has no valid pixel: all {shape[0] * shape[1]} pixels are NaN or masked")
    if not parts or sum(len(p[0]["x"]) for p in parts) == 0:
        log.info("%s: no detections", name)
        return detection_table()
    t = detection_table(*(np.concatenate([p[0][k] for p in parts]) for k in ("x", "y", "flux", "fwhm", "flag")))
    t = t[np.argsort(-t["flux"], kind="stable")]
    log.info("%s: %d detections (%d tile(s), %d valid px)", name, len(t), len(cores), n_valid)
    return t


def detect_array(data, valid=None, sep_thresh=5.0, chunk=2048, name="image"):
    """:func:`detect` on an in-memory 2-D array (NaN/Inf are invalid, as is ``~valid``)."""
    data = np.asarray(data)
    if data.ndim != 2:
        raise InputError(f"{name} must be a 2-D array; got shape {data.shape}")
    ok = np.isfinite(data)
    if valid is not None:
        ok &= np.asarray(valid, bool)

    def read(box):
        y0, y1, x0, x1 = box
        return data[y0:y1, x0:x1], ok[y0:y1, x0:x1]

    return detect(read, data.shape, sep_thresh, chunk, name=name, threads=2)


def parse_n_det(n_det, n):
    """``None`` = all; an int = that many; a float in (0, 1] = that fraction of ``n``."""
    if n_det is None:
        return n
    if isinstance(n_det, (float, np.floating)):
        if not 0.0 < float(n_det) <= 1.0:
            raise InputError(f"--n-det as a fraction must be in (0, 1]; got {n_det}")
        return max(1, int(round(float(n_det) * n)))
    k = int(n_det)
    if k < 1:
        raise InputError(f"--n-det must be a positive count or a fraction in (0, 1]; got {n_det}")
    return min(k, n)


def filter_detections(table, min_fwhm=1.0, bad_flag_bits=0, min_sep=0.0, n_det=None, name="detections",
                      min_n=None):
    """spalipy's filters in spalipy's order: fwhm >= min_fwhm (NaN fwhm passes), flag & bits == 0,
    sort by flux (descending), drop *both* members of pairs closer than ``min_sep``,
    keep the ``n_det`` brightest. Raises :class:`AlignmentError` when fewer than
    ``min_n`` remain (naming every count)."""
    from scipy.spatial import cKDTree

    t = table
    n0 = len(t)
    fw = np.asarray(t["fwhm"], float)
    keep = ~(fw < float(min_fwhm))
    n_fwhm = int((~keep).sum())
    if bad_flag_bits:
        flagged = (np.asarray(t["flag"], np.int64) & int(bad_flag_bits)) != 0
        n_flag = int((keep & flagged).sum())
        keep &= ~flagged
    else:
        n_flag = 0
    t = t[keep]
    t = t[np.argsort(-np.asarray(t["flux"], float), kind="stable")]
    n_crowd = 0
    if min_sep and len(t) > 1:
        xy = np.column_stack([t["x"], t["y"]])
        pairs = cKDTree(xy).query_pairs(float(min_sep), output_type="ndarray")
        if len(pairs):
            crowded = np.zeros(len(t), bool)
            crowded[pairs.ravel()] = True
            n_crowd = int(crowded.sum())
            t = t[~crowded]
    k = parse_n_det(n_det, len(t))
    t = t[:k]
    summary = (f"{name}: {n0} detections, {n_fwhm} below min_fwhm={min_fwhm}, {n_flag} flagged, "
               f"{n_crowd} crowded (min_sep={min_sep}), {len(t)} kept (n_det={n_det})")
    log.info(summary)
    if min_n is not None and len(t) < min_n:
        raise AlignmentError(f"too few detections in {summary.split(': ', 1)[0]}: {len(t)} kept < "
                             f"min_n_match={min_n} ({summary.split(': ', 1)[1]})")
    return t
