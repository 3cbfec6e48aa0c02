"""spalipy's class for in-memory arrays, on rastalign's detection, fit and warp.

A thin adapter: the steps are the free functions of :mod:`.spalipy_steps`; the transform
objects are those of :mod:`.spalipy_transform`.
"""
from __future__ import annotations

import logging
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from rastalign.errors import AlignmentError
from rastalign.tiepoints.detections import as_detections, as_table
from rastalign.params import STAR_DEFAULTS as D
from rastalign.runtime.scheduler import each_in_threads
from rastalign.spalipy import steps as steps
from rastalign.tiepoints.stars import star_options, log_stats
from rastalign.spalipy.transform import AffineTransform, FieldComponent, SplineTransform, on_points

log = logging.getLogger(__name__)


class Spalipy:
    """spalipy's ``Spalipy``: same constructor arguments, steps and attributes, on rastalign's engine.

    ``source_data`` is a 2-D array, or a list of them (multi-image mode: ``source_mask``,
    ``source_det`` and ``output_shape`` may then be lists too, ``None`` entries allowed, and
    every per-entry attribute - ``aligned_data``, ``affine_transform``, ... - is a list).
    ``source_mask`` is an array (non-zero = masked; an integer bitmask is carried as is),
    ``source_det``/``template_det`` astropy Tables with ``x, y, flux, fwhm, flag`` (0-based).
    Detection and spalipy's filters run in ``__init__`` (``source_det``/``template_det`` hold the
    filtered tables); :meth:`align` runs :meth:`make_source_quadlist`,
    :meth:`make_template_quadlist`, :meth:`fit_affine_transform`, :meth:`fit_spline_transform`
    and :meth:`transform_data`. ``affine_transform`` is an :class:`AffineTransform` (source ->
    template px, exact for rastalign's *full* affine; ``v`` is spalipy's similarity nearest to it).

    Differences from spalipy: the fit is a robust full affine plus, with ``spline_order > 0``, a
    cross-validated regularised residual field fitted *jointly* with the affine (so
    :meth:`fit_spline_transform` may move ``affine_transform`` by the field's affine trend;
    with no distortion the field stays flat, ``spline_transform`` None); ``aligned_data`` is
    float32 (what ``align-fits`` writes); ``cval`` defaults to NaN; output pixels reading a
    NaN or masked source pixel get ``cval``; ``output_shape`` defaults to the template's shape;
    ``min_n_match=None`` (the default) is rastalign's auto; ``min_sep=None`` is
    ``2 * max_match_dist``; without a ``source_mask``, ``aligned_mask`` is a boolean no-data mask
    (spalipy: None); masked pixels are filled from their neighbours for detection; ``skip_checking``
    is accepted and ignored (the checks are cheap); ``seed`` seeds the robust fit.
    """

    columns = ["x", "y", "flux", "fwhm", "flag"]
    x_col, y_col, flux_col, fwhm_col, flag_col = columns

    def __init__(self, source_data, source_mask=None, template_data=None, source_det=None, template_det=None,
                 output_shape=None, n_det=D.n_det, n_quad_det=D.n_quad_det, min_quad_sep=D.min_quad_sep,
                 max_match_dist=D.max_match_dist, min_n_match=D.min_n_match, sub_tile=D.sub_tile,
                 max_quad_cand=D.max_quad_cand, quad_edge_buffer=D.quad_edge_buffer,
                 patience_quad_cand=D.patience_quad_cand, max_quad_hash_dist=D.max_quad_hash_dist,
                 spline_order=D.spline_order, interp_order=D.interp_order, sep_thresh=D.sep_thresh,
                 min_fwhm=D.min_fwhm, bad_flag_bits=D.bad_flag_bits, min_sep=None,
                 preserve_footprints=D.preserve_footprints, cval=D.cval, cval_mask=0,
                 skip_checking=False, copy=True, use_memmap=False, temp_dir=None, thread_pool_max=None, seed=D.seed):
        many, data, masks, dets, shapes = steps.as_entries(source_data, source_mask, source_det, output_shape, copy)
        self._many = many
        self.template_data = None if template_data is None else steps.as_float64(template_data, copy, "template_data")
        if self.template_data is None and template_det is None:
            raise steps.SpalipyInputError("no template: give template_data (an image) or template_det (a table)")
        if preserve_footprints and self.template_data is None:
            raise steps.SpalipyInputError("preserve_footprints=True grows the template image, so it needs "
                                          "template_data, not only template_det")
        folder_ok = isinstance(temp_dir, (str, Path)) and Path(temp_dir).is_dir()
        if temp_dir is not None and not folder_ok:
            raise steps.SpalipyInputError(f"temp_dir must be an existing directory; got {temp_dir!r}")
        self.use_memmap, self.temp_dir = bool(use_memmap), Path(temp_dir) if folder_ok else None
        workers = thread_pool_max if isinstance(thread_pool_max, int) and not isinstance(thread_pool_max, bool) else 1
        self.thread_pool_max = workers if workers > 1 else None
        self.options = star_options(dict(
            n_det=n_det, n_quad_det=n_quad_det, min_quad_sep=min_quad_sep, max_match_dist=max_match_dist,
            min_n_match=min_n_match, sub_tile=sub_tile, max_quad_cand=max_quad_cand, quad_edge_buffer=quad_edge_buffer,
            patience_quad_cand=patience_quad_cand, max_quad_hash_dist=max_quad_hash_dist, spline_order=spline_order,
            interp_order=interp_order, sep_thresh=sep_thresh, min_fwhm=min_fwhm, bad_flag_bits=bad_flag_bits,
            min_sep=min_sep, preserve_footprints=preserve_footprints, output_shape=None, cval=cval,
            cval_mask=cval_mask, seed=seed))
        vars(self).update({k: v for k, v in self.options.items() if k != "output_shape"})
        self.cval_mask = cval_mask  # the caller's value (any number), not StarParams' integer
        self._unpadded_template = self.template_data
        self._template_shape = data[0].shape if self.template_data is None else self.template_data.shape
        self._frames = [_Frame(d, m, shape=s or self._template_shape) for d, m, s in zip(data, masks, shapes)]
        for k, (f, det) in enumerate(zip(self._frames, dets)):
            f.det = self._detections(det, f.data, f.mask, self._label(k))
        self.template_det = self._detections(template_det, self.template_data, None, "template")
        self.template_coo = steps.coords(self.template_det)
        self.template_quadlist = None
        self._footprint_grid_applied = False

    # ------------------------------------------------------------------ helpers
    def _label(self, k):
        return f"source entry {k}" if self._many else "source"

    def _detections(self, det, data, mask, label):
        """The filtered detection table of one frame: given (``det``) or detected in ``data``."""
        found = steps.detect_frame(data, mask, self.options["sep_thresh"], label) if det is None \
            else as_detections(det, f"{label} detections")
        return as_table(steps.prepare_detections(found, self.options, label))  # the public attributes are Tables

    def _view(self, values):
        """A per-frame list as the caller sees it: the list in multi-image mode, its only item otherwise."""
        values = list(values)
        return values if self._many else values[0]

    def _fitted(self, make):
        """``make(frame)`` for every frame with a model, None for the others, as the caller sees it."""
        return self._view(None if f.model is None else make(f) for f in self._frames)

    def _live(self):
        return [f for f in self._frames if not f.failed]

    # ------------------------------------------------------------------ attributes of the spalipy API
    source_data = property(lambda self: self._view(f.data for f in self._frames))
    source_mask = property(lambda self: self._view(f.mask for f in self._frames))
    source_det = property(lambda self: self._view(f.det for f in self._frames))
    source_coo = property(lambda self: self._view(steps.coords(f.det) for f in self._frames))
    source_quadlist = property(lambda self: None if self._frames[0].quads is None
                               else self._view(f.quads for f in self._frames))
    output_shape = property(lambda self: self._view(f.shape for f in self._frames))
    aligned_data = property(lambda self: None if not self._warped() else self._view(f.aligned for f in self._frames))
    aligned_mask = property(lambda self: None if not self._warped()
                            else self._view(f.aligned_mask for f in self._frames))
    alignment_failed = property(lambda self: self._view(f.failed for f in self._frames))
    model = property(lambda self: self._view(f.model for f in self._frames),
                     doc="rastalign's AlignmentModel(s): output px -> source px (None before a fit).")
    evidence = property(lambda self: self._view(f.evidence for f in self._frames))
    template_shape = property(lambda self: self._template_shape)

    def _warped(self):
        return any(f.warped for f in self._frames)

    @property
    def affine_transform(self):
        """:class:`AffineTransform`: the model's affine part, source px -> output (template) px."""
        return self._fitted(lambda f: steps.forward_affine(f.model, f.evidence))

    @property
    def spline_transform(self):
        """:class:`SplineTransform` over the residual field (output px -> source px offsets), None when flat."""
        return self._fitted(lambda f: None if f.model.field is None else SplineTransform(f.model))

    def _field_axis(self, axis):
        return self._fitted(lambda f: None if f.model.field is None else FieldComponent(SplineTransform(f.model), axis))

    sbs_x = property(lambda self: self._field_axis(0))
    sbs_y = property(lambda self: self._field_axis(1))

    @property
    def source_det_matched(self):
        return self._fitted(lambda f: as_table(f.evidence["source_det_matched"]))

    @property
    def template_det_matched(self):
        return self._fitted(lambda f: as_table(f.evidence["template_det_matched"]))

    # ------------------------------------------------------------------ the public steps, in their order
    def align(self):
        """Run every public step in turn (quads, affine, spline, resampled data). Returns ``self``."""
        for step in (self.make_source_quadlist, self.make_template_quadlist, self.fit_affine_transform,
                     self.fit_spline_transform, self.transform_data):
            step()
        return self

    def make_source_quadlist(self):
        """Quads of each source entry (a list per sub-tile of ``(coords, hash)``), as the matcher builds them."""
        for f in self._frames:
            f.quads = steps.make_quadlist(steps.coords(f.det), f.data.shape, self.options)

    def make_template_quadlist(self):
        """Quads of the template: one list over all its sub-tiles."""
        per_tile = steps.make_quadlist(self.template_coo, self._template_shape, self.options)
        self.template_quadlist = list(itertools.chain.from_iterable(per_tile))

    def _fit_frames(self, frames, spline_order, what):
        """Fit ``frames``; a frame that cannot be fitted is marked failed. Raises when none is left."""
        errors = []
        for k, f in enumerate(self._frames):
            if f not in frames:
                continue
            try:
                f.model, f.evidence = steps.fit_entry(f.det, self.template_det, f.data.shape, self._template_shape,
                                                      self.options, spline_order)
            except AlignmentError as exc:
                log.error("alignment failed for %s: %s", self._label(k), exc)
                f.failed, f.model, f.evidence = True, None, None
                errors.append((k, exc))
        self._footprint_grid_applied = False
        if self._live():
            return
        if errors and not self._many:
            raise steps.SpalipyAlignmentError(str(errors[0][1])) from errors[0][1]
        raise steps.SpalipyAlignmentError(f"no source entry found {what}: "
                                          + "; ".join(f"entry {k}: {e}" for k, e in errors))

    def fit_affine_transform(self):
        """Match each entry's detections (quads, verified by cross-match) and fit the robust full affine.
        Every entry is tried, including one that failed before."""
        for f in self._frames:
            f.failed = False
        self._fit_frames(list(self._frames), 0, "an affine transform")

    def fit_spline_transform(self):
        """Refit affine + residual field jointly (the model ``align-fits`` fits); nothing with spline_order=0."""
        if int(self.spline_order) == 0:
            log.info("skipping the spline fit (spline_order=0)")
            return
        self._fit_frames(self._live(), self.spline_order, "a spline transform")

    def fit(self):
        """Match and fit (no warp): the two fitting steps. Returns the :class:`AlignmentModel` (a list in
        multi-image mode)."""
        self.fit_affine_transform()
        self.fit_spline_transform()
        return self.model

    def _place_on_output_grids(self):
        """Give every fitted model its output grid: the footprint grid shared by all frames with
        ``preserve_footprints``, else each frame's ``output_shape`` at the template's origin."""
        live = self._live()
        if not self.preserve_footprints:
            for f in live:
                f.model = f.model.with_output_grid(f.model.pre, f.shape)
            return
        if self._footprint_grid_applied:
            return
        anchor, shape = steps.footprint_grid([f.model for f in live], [f.data.shape for f in live],
                                             self._template_shape)
        for f in live:
            f.model = steps.on_grid(f.model, anchor, shape)
        for f in self._frames:
            f.shape = shape
        if self._unpadded_template is not None:
            self.template_data = steps.pad_template(self._unpadded_template, anchor, shape, self.cval)
        self._footprint_grid_applied = True

    def _resample(self, f):
        if f.failed:
            return None, None
        out, mask = steps.warp_entry(f.data, f.mask, f.model, f.shape, self.interp_order, self.cval, self.cval_mask)
        if self.use_memmap:
            out, mask = steps.memmap_temp(out, self.temp_dir), steps.memmap_temp(mask, self.temp_dir)
        return out, mask

    def transform_data(self):
        """Resample each aligned entry onto its output grid (``aligned_data`` float32, ``aligned_mask``);
        with ``thread_pool_max`` > 1, that many entries at a time."""
        if all(f.model is None for f in self._frames):
            raise steps.SpalipyAlignmentError("no fit yet: call fit_affine_transform() (or align()) first")
        self._place_on_output_grids()
        results = each_in_threads(lambda k: self._resample(self._frames[k]), len(self._frames),
                                  self.thread_pool_max or 1)
        for f, (out, mask) in zip(self._frames, results):
            f.aligned, f.aligned_mask, f.warped = out, mask, True

    def full_transform(self, coo, entry=0, inverse=True):
        """Apply entry ``entry``'s whole model (affine + field) to ``(N, 2)`` points or a ``(2, H, W)`` x, y
        stack: output (template) px -> source px (``inverse=True``) or source -> output px."""
        model = self._frames[entry].model
        if model is None:
            raise steps.SpalipyAlignmentError(f"no model for entry {entry}: not fitted or alignment failed")
        return on_points(model if inverse else model.inverse_points, coo)

    def transform_stats(self):
        """Fit statistics (matched count, inliers, mean/median/std/RMS of the x and y residuals, px) as a
        dict (a list in multi-image mode, None for failed entries)."""
        if all(f.evidence is None for f in self._frames):
            raise AlignmentError("no fit yet: call align() first")
        return self._view(None if f.evidence is None else dict(f.evidence["stats"]) for f in self._frames)

    def log_transform_stats(self):
        """Log :meth:`transform_stats` at INFO level, entry by entry, and return it."""
        stats = self.transform_stats()
        for k, st in enumerate(stats if self._many else [stats]):
            if st is not None:
                log.info("source entry %d:", k)
                log_stats(st, log)
        return stats


@dataclass(eq=False)
class _Frame:
    """One source frame and what the steps make of it."""

    data: np.ndarray
    mask: Optional[np.ndarray]
    shape: tuple
    det: object = None
    quads: Optional[list] = None
    model: object = None
    evidence: Optional[dict] = None
    failed: bool = False
    warped: bool = False
    aligned: Optional[np.ndarray] = None
    aligned_mask: Optional[np.ndarray] = None


__all__ = ["AffineTransform", "Spalipy", "SplineTransform"]
