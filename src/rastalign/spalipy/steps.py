"""spalipy's steps as free functions over rastalign's detection, quad matching, fit and warp.

The :class:`~rastalign.spalipy.aligner.Spalipy` class is a thin adapter over these. Models
are pull maps, **output (template) px -> source px**, ``(x, y)``, 0-based, pixel centres at
integers; spalipy's transforms go the other way (source -> template) and are built from
them by :mod:`.spalipy_transform`.
"""
from __future__ import annotations

import itertools
import logging
import os
import tempfile

import numpy as np

from rastalign.errors import AlignmentError, InputError
from rastalign.geometry.affine import invert_affine
from rastalign.tiepoints.detect import detect_array, filter_detections
from rastalign.tiepoints.quads import quad_hash, subtile_groups
from rastalign.tiepoints.stars import min_matches, fit_detections
from rastalign.params import WarpParams, resampling_for
from rastalign.runtime.scheduler import local_scheduler
from rastalign.spalipy.transform import AffineTransform

log = logging.getLogger(__name__)

# spalipy's filters run once, when the detections are prepared; the fit must not apply n_det again
# (a fraction of a fraction), and the class lays out the output grid itself (spalipy's footprint rule)
FIT_OVERRIDES = {"n_det": None, "preserve_footprints": False, "output_shape": None}
EDGE_SAMPLES = 65  # points per frame edge when mapping a footprint (exact for an affine, close for a field)


class SpalipyInputError(InputError, ValueError):
    """An unusable argument: the ValueError spalipy raises, and rastalign's InputError."""


class SpalipyDetectionError(AlignmentError, ValueError):
    """Too few detections left after spalipy's filters (spalipy raises ValueError in ``__init__``)."""


class SpalipyAlignmentError(AlignmentError, RuntimeError):
    """No source entry could be aligned (spalipy raises RuntimeError)."""


# ---------------------------------------------------------------------------------- inputs
def as_float64(data, copy=True, name="source_data"):
    """A 2-D float64 array; float64 arrays (memmaps included) are kept as they are, as spalipy does
    (nothing here ever writes into them); other dtypes are converted (``copy=False`` avoids a copy
    when numpy can)."""
    arr = data if isinstance(data, np.ndarray) else np.asarray(data)
    if arr.dtype != np.float64:
        arr = arr.astype(np.float64, copy=copy)
    if arr.ndim != 2:
        raise SpalipyInputError(f"{name} must be a 2-D array; got shape {arr.shape}")
    return arr


def _is_shape(v):
    return v is None or (isinstance(v, (tuple, list)) and len(v) == 2
                         and all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in v))


def _per_entry(value, n, name, single):
    """spalipy's broadcasting: one value (``single(value)``) for every entry, or a list of ``n``."""
    if single(value):
        return [value] * n
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise SpalipyInputError(f"{name} must be one value or a list of {n} (one per source entry); "
                                f"got {type(value).__name__}" + (f" of {len(value)}" if isinstance(value, (list, tuple))
                                                                  else ""))
    return list(value)


def as_entries(source_data, source_mask, source_det, output_shape, copy=True):
    """spalipy's single- or multi-image inputs as per-entry lists; returns ``(as_list, data, masks, dets, shapes)``."""
    as_list = isinstance(source_data, (list, tuple))
    raw = list(source_data) if as_list else [source_data]
    if not raw:
        raise SpalipyInputError("source_data is an empty list")
    data = [as_float64(d, copy, f"source_data entry {i}" if as_list else "source_data") for i, d in enumerate(raw)]
    n = len(data)
    masks = _per_entry(source_mask, n, "source_mask", lambda m: m is None or isinstance(m, np.ndarray))
    dets = _per_entry(source_det, n, "source_det", lambda d: d is None or not isinstance(d, (list, tuple)))
    shapes = _per_entry(output_shape, n, "output_shape", _is_shape)
    for i, (d, m, s) in enumerate(zip(data, masks, shapes)):
        if m is not None:
            m = masks[i] = np.asarray(m)
            if m.shape != d.shape:
                raise SpalipyInputError(f"source_mask shape {m.shape} differs from source_data {d.shape}"
                                        + (f" (entry {i})" if as_list else ""))
        if not _is_shape(s) or (s is not None and min(s) < 1):
            raise SpalipyInputError(f"output_shape must be two positive sizes (rows, cols); got {s!r}")
        shapes[i] = None if s is None else (int(s[0]), int(s[1]))
    return as_list, data, masks, dets, shapes


# ---------------------------------------------------------------------------------- detections
def fill_masked(data, mask):
    """``data`` with masked pixels (``mask != 0``) replaced by the mean of their valid 3x3 neighbours
    (NaN where there is none), so that a sparse bad-pixel mask does not cost the stars it touches
    while a masked region stays invalid to detection."""
    bad = np.asarray(mask) != 0
    if not bad.any():
        return data
    from scipy import ndimage

    valid = np.isfinite(data) & ~bad
    num = ndimage.uniform_filter(np.where(valid, data, 0.0), 3, mode="constant")
    den = ndimage.uniform_filter(valid.astype(float), 3, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        fill = np.where(den > 1e-9, num / den, np.nan)
    return np.where(bad, fill, data)


def detect_frame(data, mask, sep_thresh, name):
    """``sep`` detections of an in-memory frame (NaN invalid; masked pixels filled, see :func:`fill_masked`)."""
    if mask is not None:
        data = fill_masked(data, mask)
    return detect_array(data, None, float(sep_thresh), name=name)


def prepare_detections(det, o, name):
    """spalipy's filters (min_fwhm, bad_flag_bits, min_sep, n_det); too few left raises as spalipy does."""
    try:
        return filter_detections(det, o["min_fwhm"], o["bad_flag_bits"], o["min_sep"], o["n_det"], name,
                                 min_n=min_matches(o))
    except AlignmentError as exc:
        raise SpalipyDetectionError(str(exc)) from None


def coords(det):
    """``(N, 2)`` ``(x, y)`` of a detection table."""
    return np.column_stack([np.asarray(det["x"], float), np.asarray(det["y"], float)])


def make_quadlist(xy, shape, o):
    """The quads rastalign's matcher builds (:func:`rastalign.tiepoints.quads.build_quads`), per sub-tile:
    a list (one per sub-tile) of ``(coords (4, 2) in canonical order, hash (6,))`` tuples.

    Raises :class:`SpalipyInputError` (a ValueError, as spalipy) when no sub-tile holds the 4
    detections a quad needs; a sparse sub-tile alone only gets no quads (the matcher skips it).
    """
    xy = np.asarray(xy, float)
    groups = subtile_groups(xy, shape, int(o["n_quad_det"]), int(o["sub_tile"]), float(o["quad_edge_buffer"]))
    if not any(len(g) >= 4 for g in groups):
        raise SpalipyInputError(f"too few detections for a quad (4 are needed): {max(len(g) for g in groups)} "
                                f"in the richest sub-tile (quad_edge_buffer={o['quad_edge_buffer']}, sub_tile={o['sub_tile']})")
    out = []
    for idx in groups:
        if len(idx) < 4:
            out.append([])
            continue
        q = np.array(list(itertools.combinations(idx, 4)), dtype=np.int64)
        order, h, _, dmin = quad_hash(xy[q])
        keep = dmin >= float(o["min_quad_sep"])
        q = np.take_along_axis(q, order, 1)[keep]
        out.append([(xy[k], hh) for k, hh in zip(q, h[keep])])
    return out


# ---------------------------------------------------------------------------------- fit
class _NoDistortionHint(logging.Filter):
    """Drops fit.py's "an affine cannot follow it" hint: the affine step of a fit that goes on to the field."""

    def filter(self, record):
        return "align-fits fits the distortion" not in record.getMessage()


def fit_entry(source_det, template_det, source_shape, template_shape, o, spline_order):
    """rastalign's match and fit (:func:`~rastalign.tiepoints.stars.fit_detections`) of prepared detections, on
    the template grid; ``spline_order=0`` fits the affine only. Returns ``(model, evidence)``."""
    opts = dict(o, spline_order=int(spline_order), **FIT_OVERRIDES)
    fit_log, hint = logging.getLogger("rastalign.tiepoints.stars"), _NoDistortionHint()
    if int(spline_order) == 0 and int(o["spline_order"]) > 0:
        fit_log.addFilter(hint)
    try:
        return fit_detections(source_det, template_det, tuple(source_shape), tuple(template_shape), **opts)
    finally:
        fit_log.removeFilter(hint)  # nothing to remove when it was not added


def forward_affine(model, evidence):
    """spalipy's ``affine_transform`` of a model: its affine part, source px -> output px, anchored at the
    centroid of the inlier source stars."""
    sm = evidence["source_det_matched"]
    use = np.asarray(evidence["inliers"], bool)
    anchor = coords(sm)[use].mean(axis=0) if use.any() else np.zeros(2)
    return AffineTransform.from_matrix(invert_affine(model.linear), anchor)


def footprint_grid(models, source_shapes, template_shape):
    """spalipy's ``preserve_footprints`` grid: the template grid grown to hold every source frame.

    Each source frame's edge is mapped into template px; spalipy's rule sets the extents (the
    extremes truncated towards zero): ``anchor = -min(0, min)``, ``size = max(template size, max) +
    anchor`` per axis. Returns ``((anchor_x, anchor_y), (rows, cols))``.
    """
    e = np.linspace(0.0, 1.0, EDGE_SAMPLES)
    lo, hi = np.array([np.inf, np.inf]), np.array([-np.inf, -np.inf])
    for model, (ny, nx) in zip(models, source_shapes):
        bx = np.concatenate([e * (nx - 1), np.full_like(e, nx - 1.0), e * (nx - 1), np.zeros_like(e)])
        by = np.concatenate([np.zeros_like(e), e * (ny - 1), np.full_like(e, ny - 1.0), e * (ny - 1)])
        tx, ty = model.inverse_points(bx, by)
        lo = np.minimum(lo, [tx.min(), ty.min()])
        hi = np.maximum(hi, [tx.max(), ty.max()])
    lo_i, hi_i = [int(v) for v in lo], [int(v) for v in hi]  # int() truncates towards zero, as spalipy
    ax, ay = -min(0, lo_i[0]), -min(0, lo_i[1])
    shape = (max(template_shape[0], hi_i[1]) + ay, max(template_shape[1], hi_i[0]) + ax)
    return (ax, ay), shape


def on_grid(model, anchor, shape):
    """``model`` seen from an output grid whose pixel ``(anchor_x, anchor_y)`` is template pixel ``(0, 0)``."""
    ax, ay = anchor
    return model.with_output_grid(np.array([[1.0, 0.0, -float(ax)], [0.0, 1.0, -float(ay)]]), shape)


def pad_template(template, anchor, shape, cval):
    """The template placed on the footprint grid (``cval`` around it), as spalipy pads it."""
    ax, ay = anchor
    ny, nx = template.shape
    return np.pad(template, ((ay, shape[0] - ny - ay), (ax, shape[1] - nx - ax)), "constant", constant_values=cval)


# ---------------------------------------------------------------------------------- warp
def _warp(data, model, shape, resampling, dtype):
    from rastalign.warp.graph import warp_graph  # dask's graph: only when a frame is warped

    wp = WarpParams(resampling=resampling)
    return warp_graph(data[None], model, shape, wp, dtype, np.nan).compute(scheduler=local_scheduler("synchronous"))[0]


def warp_entry(data, mask, model, shape, interp_order, cval, cval_mask):
    """Resample one source frame onto the output grid through the lazy warp every rastalign path uses.

    Returns ``(aligned_data float32, aligned_mask)``. Masked source pixels (``mask != 0``) and NaN are
    invalid: output pixels that would read them, or that fall outside the source frame, get ``cval``.
    ``aligned_mask`` is spalipy's: the source mask's values carried by nearest neighbour (its dtype),
    ``cval_mask`` outside the source frame; without a source mask it is boolean, True where
    ``aligned_data`` has no value (spalipy returns None there).
    """
    src = np.array(data, dtype=np.float32)
    if mask is not None:
        src[np.asarray(mask) != 0] = np.nan
    out = _warp(src, model, shape, resampling_for(interp_order), "float32")
    valid = np.isfinite(out)
    out[~valid] = cval
    if mask is None:
        return out, ~valid
    m = np.asarray(mask)
    # nearest neighbour of each source pixel's flat index (exact in float64 below 2**53 pixels), then the
    # mask's own values gathered by it: a 64-bit bitmask keeps every bit, which float64 values would not
    index = _warp(np.arange(m.size, dtype=np.float64).reshape(m.shape), model, shape, "nearest", "float64")
    inside = np.isfinite(index)
    carried = np.full(shape, cval_mask).astype(m.dtype)
    carried[inside] = m.reshape(-1)[index[inside].astype(np.int64)]
    return out, carried


def memmap_temp(array, temp_dir=None):
    """``array`` copied into a ``np.memmap`` on a temporary file that is unlinked at once (it lives as
    long as the map): out-of-RAM storage for large outputs. ``temp_dir`` as :mod:`tempfile` (None:
    TMPDIR, TEMP, TMP, then the platform default)."""
    arr = np.asarray(array)
    fd, path = tempfile.mkstemp(prefix="rastalign_", suffix=".mmap", dir=None if temp_dir is None else str(temp_dir))
    os.close(fd)
    try:
        mm = np.memmap(path, mode="w+", dtype=arr.dtype, shape=arr.shape)
    finally:
        os.unlink(path)
    mm[...] = arr
    return mm
