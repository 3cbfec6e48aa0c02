"""spalipy's class for in-memory arrays, on rastalign's detection, fit and warp.

A thin adapter: the steps are the free functions of :mod:`.spalipy_steps`; the transform
objects are those of :mod:`.spalipy_transform`.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import AlignmentError
from ..io.catalogs import as_detections, as_table
from ..params import STAR_DEFAULTS as D
from . import spalipy_steps as steps
from .fit import _options, log_stats
from .spalipy_transform import AffineTransform, FieldComponent, SplineTransform

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
        as_list, data, masks, dets, shapes = steps.as_entries(source_data, source_mask, source_det, output_shape, copy)
        self._as_list, self._n = as_list, len(data)
        self.template_data = None if template_data is None else steps.as_float64(template_data, copy, "template_data")
        if self.template_data is None and template_det is None:
            raise steps.SpalipyInputError("either template_data or template_det must be given")
        if preserve_footprints and self.template_data is None:
            raise steps.SpalipyInputError("preserve_footprints=True needs template_data")
        if temp_dir is not None and not (isinstance(temp_dir, (str, Path)) and Path(temp_dir).is_dir()):
            raise steps.SpalipyInputError(f"temp_dir must be an existing directory; got {temp_dir!r}")
        self.use_memmap, self.temp_dir = bool(use_memmap), None if temp_dir is None else Path(temp_dir)
        self.thread_pool_max = thread_pool_max if isinstance(thread_pool_max, int) and thread_pool_max > 1 else None
        self.options = _options(dict(
            n_det=n_det, n_quad_det=n_quad_det, min_quad_sep=min_quad_sep, max_match_dist=max_match_dist,
            min_n_match=min_n_match, sub_tile=sub_tile, max_quad_cand=max_quad_cand, quad_edge_buffer=quad_edge_buffer,
            patience_quad_cand=patience_quad_cand, max_quad_hash_dist=max_quad_hash_dist, spline_order=spline_order,
            interp_order=interp_order, sep_thresh=sep_thresh, min_fwhm=min_fwhm, bad_flag_bits=bad_flag_bits,
            min_sep=min_sep, preserve_footprints=preserve_footprints, output_shape=None, cval=cval,
            cval_mask=cval_mask, seed=seed))
        for k, v in self.options.items():
            if k != "output_shape":
                setattr(self, k, v)
        self.cval_mask = cval_mask  # spalipy's value (any number), not StarParams' integer
        self._source_data, self._source_mask = data, masks
        self._source_det = [self._prepare(d, data[i], masks[i], self._name("source", i)) for i, d in enumerate(dets)]
        self.template_det = self._prepare(template_det, self.template_data, None, "template")
        self.template_coo = steps.coords(self.template_det)
        self._template_raw = self.template_data
        self._template_shape = self.template_data.shape if self.template_data is not None else data[0].shape
        self._output_shape = [s or self._template_shape for s in shapes]
        self._source_quadlist = self.template_quadlist = None
        self._model = [None] * self._n
        self._evidence = [None] * self._n
        self._aligned_data = self._aligned_mask = None
        self._alignment_failed = [False] * self._n
        self._corrected_footprints = False
        self._anchor_width = self._anchor_height = 0

    def _name(self, role, i):
        return f"{role} entry {i}" if self._as_list else role

    def _prepare(self, det, data, mask, name):
        if det is None:
            det = steps.detect_frame(data, mask, self.options["sep_thresh"], name)
        else:
            det = as_detections(det, f"{name} detections")
        det = as_table(steps.prepare_detections(det, self.options, name))  # spalipy's attributes hold Tables
        if self.use_memmap:
            steps.memmap_release(data)
        return det

    def _maybe_as_list(self, values):
        return values if values is None or self._as_list else values[0]

    def _entries(self):
        return [i for i in range(self._n) if not self._alignment_failed[i]]

    # spalipy's attributes --------------------------------------------------------------
    source_data = property(lambda self: self._maybe_as_list(self._source_data))
    source_mask = property(lambda self: self._maybe_as_list(self._source_mask))
    source_det = property(lambda self: self._maybe_as_list(self._source_det))
    source_coo = property(lambda self: self._maybe_as_list([steps.coords(d) for d in self._source_det]))
    source_quadlist = property(lambda self: self._maybe_as_list(self._source_quadlist))
    output_shape = property(lambda self: self._maybe_as_list(self._output_shape))
    aligned_data = property(lambda self: self._maybe_as_list(self._aligned_data))
    aligned_mask = property(lambda self: self._maybe_as_list(self._aligned_mask))
    alignment_failed = property(lambda self: self._maybe_as_list(self._alignment_failed))
    model = property(lambda self: self._maybe_as_list(self._model),
                     doc="rastalign's AlignmentModel(s): output px -> source px (None before a fit).")
    evidence = property(lambda self: self._maybe_as_list(self._evidence))
    template_shape = property(lambda self: self._template_shape)

    def _per_entry(self, f):
        return self._maybe_as_list([None if m is None else f(i, m) for i, m in enumerate(self._model)])

    @property
    def affine_transform(self):
        """:class:`AffineTransform`: the model's affine part, source px -> output (template) px."""
        return self._per_entry(lambda i, m: steps.forward_affine(m, self._evidence[i]))

    @property
    def spline_transform(self):
        """:class:`SplineTransform` over the residual field (output px -> source px offsets), None when flat."""
        return self._per_entry(lambda i, m: None if m.field is None else SplineTransform(m))

    @property
    def sbs_x(self):
        return self._per_entry(lambda i, m: None if m.field is None else FieldComponent(SplineTransform(m), 0))

    @property
    def sbs_y(self):
        return self._per_entry(lambda i, m: None if m.field is None else FieldComponent(SplineTransform(m), 1))

    @property
    def source_det_matched(self):
        return self._per_entry(lambda i, m: as_table(self._evidence[i]["source_det_matched"]))

    @property
    def template_det_matched(self):
        return self._per_entry(lambda i, m: as_table(self._evidence[i]["template_det_matched"]))

    # spalipy's steps ------------------------------------------------------------------
    def align(self):
        """Quads, affine, spline, then the resampled data: spalipy's full routine. Returns ``self``."""
        self.make_source_quadlist()
        self.make_template_quadlist()
        self.fit_affine_transform()
        self.fit_spline_transform()
        self.transform_data()
        return self

    def make_source_quadlist(self):
        """Quads of each source entry (a list per sub-tile of ``(coords, hash)``), as the matcher builds them."""
        self._source_quadlist = [steps.make_quadlist(steps.coords(d), s.shape, self.options)
                                 for d, s in zip(self._source_det, self._source_data)]

    def make_template_quadlist(self):
        """Quads of the template, flattened over its sub-tiles (as spalipy)."""
        ql = steps.make_quadlist(self.template_coo, self._template_shape, self.options)
        self.template_quadlist = [q for sub in ql for q in sub]

    def _fit_all(self, spline_order, what, entries):
        errors = {}
        for i in entries:
            try:
                self._model[i], self._evidence[i] = steps.fit_entry(
                    self._source_det[i], self.template_det, self._source_data[i].shape, self._template_shape,
                    self.options, spline_order)
            except AlignmentError as exc:
                log.error("alignment failed for %s: %s", self._name("source", i), exc)
                self._alignment_failed[i], self._model[i], self._evidence[i] = True, None, None
                errors[i] = exc
        if all(self._alignment_failed):
            if not self._as_list and errors:
                raise steps.SpalipyAlignmentError(str(errors[0])) from errors[0]
            raise steps.SpalipyAlignmentError(f"no source entry found {what}: " +
                                              "; ".join(f"entry {i}: {e}" for i, e in errors.items()))
        self._corrected_footprints = False

    def fit_affine_transform(self):
        """Match each entry's detections (quads, verified by cross-match) and fit the robust full affine."""
        self._alignment_failed = [False] * self._n  # every entry is tried again, as spalipy does
        self._fit_all(0, "an affine transform", range(self._n))

    def fit_spline_transform(self):
        """Refit affine + residual field jointly (the model ``align-fits`` fits); nothing with spline_order=0."""
        if int(self.spline_order) == 0:
            log.info("skipping the spline fit (spline_order=0)")
            return
        self._fit_all(self.spline_order, "a spline transform", self._entries())

    def fit(self):
        """Match and fit (no warp): the two fitting steps. Returns the :class:`AlignmentModel` (a list in
        multi-image mode)."""
        self.fit_affine_transform()
        self.fit_spline_transform()
        return self.model

    def _grid(self):
        """Place every entry's model on its output grid (spalipy's footprint grid with preserve_footprints)."""
        ok = self._entries()
        if self.preserve_footprints:
            if not self._corrected_footprints:
                anchor, shape = steps.footprint_grid([self._model[i] for i in ok],
                                                     [self._source_data[i].shape for i in ok], self._template_shape)
                for i in ok:
                    self._model[i] = steps.on_grid(self._model[i], anchor, shape)
                self._output_shape = [shape] * self._n
                if self._template_raw is not None:
                    self.template_data = steps.pad_template(self._template_raw, anchor, shape, self.cval)
                self._anchor_width, self._anchor_height = anchor
                self._corrected_footprints = True
        else:
            for i in ok:
                self._model[i] = self._model[i].with_output_grid(self._model[i].pre, self._output_shape[i])

    def transform_data(self):
        """Resample each aligned entry onto its output grid (``aligned_data`` float32, ``aligned_mask``)."""
        if all(m is None for m in self._model):
            raise steps.SpalipyAlignmentError("no fit yet: call fit_affine_transform() (or align()) first")
        self._grid()

        def one(i):
            if self._alignment_failed[i]:
                return None, None
            out, mask = steps.warp_entry(self._source_data[i], self._source_mask[i], self._model[i],
                                         self._output_shape[i], self.interp_order, self.cval, self.cval_mask)
            if self.use_memmap:
                for a in (self._source_data[i], self._source_mask[i]):
                    steps.memmap_release(a)
                out = steps.memmap_temp(out, self.temp_dir)
                mask = steps.memmap_temp(mask, self.temp_dir)
            return out, mask

        if self.thread_pool_max and self._n > 1:
            with ThreadPoolExecutor(self.thread_pool_max) as pool:
                res = list(pool.map(one, range(self._n)))
        else:
            res = [one(i) for i in range(self._n)]
        self._aligned_data = [r[0] for r in res]
        self._aligned_mask = [r[1] for r in res]

    def full_transform(self, coo, entry=0, inverse=True):
        """Apply entry ``entry``'s whole model (affine + field) to ``(N, 2)`` points or a ``(2, ...)`` x, y
        stack: output (template) px -> source px (``inverse=True``, as spalipy) or source -> output px."""
        model = self._model[entry]
        if model is None:
            raise steps.SpalipyAlignmentError(f"no model for entry {entry}: not fitted or alignment failed")
        xy = np.asarray(coo, float)
        x, y = (xy[:, 0], xy[:, 1]) if xy.ndim == 2 else (xy[0], xy[1])
        fx, fy = model(x, y) if inverse else model.inverse_points(x, y)
        return np.column_stack([fx, fy]) if xy.ndim == 2 else np.stack([fx, fy])

    def transform_stats(self):
        """Fit statistics (matched count, inliers, mean/median/std/RMS of the x and y residuals, px) as a
        dict (a list in multi-image mode, None for failed entries)."""
        if all(e is None for e in self._evidence):
            raise AlignmentError("no fit yet: call align() first")
        return self._maybe_as_list([None if e is None else dict(e["stats"]) for e in self._evidence])

    def log_transform_stats(self):
        """Log :meth:`transform_stats` at INFO level, entry by entry, and return it."""
        stats = self.transform_stats()
        for i, st in enumerate(stats if self._as_list else [stats]):
            if st is not None:
                log.info("source entry %d:", i)
                log_stats(st, log)
        return stats


FitsAligner = Spalipy
__all__ = ["AffineTransform", "FitsAligner", "Spalipy", "SplineTransform"]
