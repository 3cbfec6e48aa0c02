"""spalipy's class for in-memory arrays, on rastalign's detection, fit and warp."""
from __future__ import annotations

import numpy as np

from ..errors import AlignmentError, InputError
from ..io.catalogs import as_detections
from ..params import STAR_DEFAULTS as D
from ..tiepoints.detect import detect_array
from .fit import _options, fit_detections, log_stats, resampling_for


class Spalipy:
    """spalipy's class for in-memory data: same constructor arguments and attributes.

    ``source_data``/``template_data`` are 2-D arrays (NaN = invalid), ``source_mask`` a
    boolean array (True = masked), ``source_det``/``template_det`` astropy Tables with
    ``x, y, flux, fwhm, flag`` (0-based). Detection happens in ``__init__`` as in spalipy;
    ``align()`` matches, fits a *full* affine and the regularised spline field, and warps
    onto the template grid. Differences from spalipy: ``cval`` defaults to NaN and
    ``cval_mask`` to 1 (outside the footprint is masked); ``min_sep=None`` is
    ``2 * max_match_dist``; ``spline_order > 0`` turns on the cross-validated cubic field.
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
                 preserve_footprints=D.preserve_footprints, cval=D.cval, cval_mask=D.cval_mask,
                 skip_checking=False, copy=True, use_memmap=False, temp_dir=None, thread_pool_max=None, seed=D.seed):
        if isinstance(source_data, (list, tuple)):
            raise InputError("multi-image (list) mode is not supported: align one source array per instance")
        self.source_data = np.array(source_data, dtype=float, copy=copy)
        if self.source_data.ndim != 2:
            raise InputError(f"source_data must be a 2-D array; got shape {self.source_data.shape}")
        self.source_mask = None if source_mask is None else np.asarray(source_mask, bool)
        if self.source_mask is not None and self.source_mask.shape != self.source_data.shape:
            raise InputError(f"source_mask shape {self.source_mask.shape} differs from source_data "
                             f"{self.source_data.shape}")
        self.template_data = None if template_data is None else np.asarray(template_data, float)
        if self.template_data is None and template_det is None:
            raise InputError("either template_data or template_det must be given")
        if preserve_footprints and self.template_data is None:
            raise InputError("preserve_footprints needs template_data")
        self.options = _options(dict(
            n_det=n_det, n_quad_det=n_quad_det, min_quad_sep=min_quad_sep, max_match_dist=max_match_dist,
            min_n_match=min_n_match, sub_tile=sub_tile, max_quad_cand=max_quad_cand, quad_edge_buffer=quad_edge_buffer,
            patience_quad_cand=patience_quad_cand, max_quad_hash_dist=max_quad_hash_dist, spline_order=spline_order,
            interp_order=interp_order, sep_thresh=sep_thresh, min_fwhm=min_fwhm, bad_flag_bits=bad_flag_bits,
            min_sep=min_sep, preserve_footprints=preserve_footprints, output_shape=output_shape, cval=cval,
            cval_mask=cval_mask, seed=seed))
        for k, v in self.options.items():
            setattr(self, k, v)
        valid = None if self.source_mask is None else ~self.source_mask
        self.source_det = (as_detections(source_det, "source_det") if source_det is not None else
                           detect_array(self.source_data, valid, float(sep_thresh), name="source"))
        self.template_det = (as_detections(template_det, "template_det") if template_det is not None else
                             detect_array(self.template_data, None, float(sep_thresh), name="template"))
        self.model = self.evidence = None
        self.aligned_data = self.aligned_mask = None
        self.alignment_failed = False

    @property
    def template_shape(self):
        return self.template_data.shape if self.template_data is not None else self.source_data.shape

    def fit(self):
        """Match and fit the model (no warp); returns the :class:`AlignmentModel`."""
        try:
            self.model, self.evidence = fit_detections(self.source_det, self.template_det, self.source_data.shape,
                                                       self.template_shape, **self.options)
        except AlignmentError:
            self.alignment_failed = True
            raise
        self.output_shape = self.model.output_shape
        return self.model

    def align(self):
        """Fit, then resample the source onto the template grid (``aligned_data``, ``aligned_mask``)
        through the same lazy warp as ``align-fits``, on the synchronous scheduler (numpy in and out)."""
        from ..params import WarpParams
        from ..warp.graph import lazy_warp

        if self.model is None:
            self.fit()
        shape = self.model.output_shape
        data = self.source_data.astype(np.float32)
        if self.source_mask is not None:
            data[self.source_mask] = np.nan  # NaN is invalid to the warp
        wp = WarpParams(resampling=resampling_for(self.interp_order))
        out = lazy_warp(data[None], self.model, shape, wp, "float32", np.nan).compute(scheduler="synchronous")[0]
        valid = np.isfinite(out)
        out[~valid] = self.cval
        self.aligned_data = out
        mask = np.where(valid, 0, int(self.cval_mask)).astype(bool)
        if self.source_mask is not None:
            near = lazy_warp(self.source_mask[None].astype(np.float32), self.model, shape,
                             WarpParams(resampling="nearest"), "float32", np.nan).compute(scheduler="synchronous")[0]
            mask |= near > 0.5  # NaN (no source pixel) compares False
        self.aligned_mask = mask
        return self

    # spalipy's attributes ------------------------------------------------------------
    @property
    def affine_transform(self):
        """The affine part of the pull map, output (template) px -> source px, as a 2x3 matrix."""
        return None if self.model is None else self.model.linear

    @property
    def spline_transform(self):
        """The residual :class:`SplineField` (template px -> source px offsets), or None when flat."""
        return None if self.model is None else self.model.field

    @property
    def source_det_matched(self):
        return None if self.evidence is None else self.evidence["source_det_matched"]

    @property
    def template_det_matched(self):
        return None if self.evidence is None else self.evidence["template_det_matched"]

    def full_transform(self, coo, inverse=True):
        """Apply the model to (N, 2) coordinates: template -> source (``inverse=True``) or source -> template."""
        coo = np.asarray(coo, float)
        f = self.model if inverse else self.model.inverse_points
        x, y = f(coo[:, 0], coo[:, 1])
        return np.column_stack([x, y])

    def transform_stats(self):
        """Fit statistics as a dict: matched count, inliers, mean/median/std/RMS of x and y residuals (px)."""
        if self.evidence is None:
            raise AlignmentError("no fit yet: call align() first")
        return dict(self.evidence["stats"])

    def log_transform_stats(self):
        """Log :meth:`transform_stats` at INFO level and return it."""
        st = self.transform_stats()
        log_stats(st)
        return st


FitsAligner = Spalipy
