"""The xarray accessor ``coreg``, registered on DataArray and Dataset by ``import rastalign``.

``moving.coreg.align(reference, **options)`` returns a lazy, dask-backed DataArray on the
moving grid (``output_on_moving_grid=False``: the reference grid cropped to the moving
footprint); ``.coreg.estimate(reference)`` returns the model on that same output grid,
recording the grids in ``model.meta["grids"]`` so that ``.coreg.apply(model, grid=...)`` can
re-base it onto another grid of the same CRS or a moving array of another resolution. The
model is the pull map **output pixel -> moving pixel**, ``(x, y)``, integer pixel centres.

An adapter: the logic is in :mod:`rastalign.pipelines.arrays` (estimation on the files behind the
arrays, the CLI's lazy warp over the array's dask graph, the CLI's sinks) and
:mod:`rastalign.io.arrays` (an array's grid and source). Nothing is read before ``compute``.
"""
from __future__ import annotations

import xarray as xr

from rastalign.pipelines import array_stack, arrays as array_align


@xr.register_dataarray_accessor("coreg")
class CoregAccessor:
    """``da.coreg``: align this (moving) array onto a reference; see :mod:`rastalign.xarray`."""

    def __init__(self, obj):
        self._obj = obj

    def estimate(self, reference, evidence=False, **options):
        """The :class:`~rastalign.AlignmentModel` (output px -> moving px) on the output grid the options choose;
        with ``evidence=True``, ``(model, evidence)`` (see :func:`rastalign.pipelines.arrays.estimate`)."""
        return array_align.estimate(self._obj, reference, evidence=evidence, **options)

    def apply(self, model, grid=None, **options):
        """Lazy DataArray: this array warped by ``model`` onto ``grid`` (None: the model's own output grid)."""
        return array_align.apply(self._obj, model, grid, **options)

    def align(self, reference, dim=None, **options):
        """Estimate and apply: a lazy, dask-backed DataArray on the moving grid (or the reference's); with
        ``dim`` (e.g. ``"time"``) each slice along it is aligned (see :mod:`rastalign.pipelines.array_stack`)."""
        if dim is not None:
            return array_stack.align_along(self._obj, reference, dim, **options)
        return array_align.align(self._obj, reference, **options)

    def to_raster(self, path, format=None, overwrite=False, progress=False):
        """Write this (aligned, lazy) array as the CLI would: tiled deflated GeoTIFF / COG with the model
        tag, FITS or Zarr (``format`` any case, else from the suffix)."""
        return array_align.to_raster(self._obj, path, format, overwrite, progress)


@xr.register_dataset_accessor("coreg")
class CoregDatasetAccessor:
    """``ds.coreg``: every variable with (y, x) dims gets the same model, estimated on ``variable``."""

    def __init__(self, obj):
        self._obj = obj

    def estimate(self, reference, variable=None, evidence=False, **options):
        return array_align.estimate_dataset(self._obj, reference, variable, evidence, **options)

    def apply(self, model, grid=None, reference=None, **options):
        return array_align.apply_dataset(self._obj, model, grid, reference, **options)

    def align(self, reference, variable=None, **options):
        return array_align.align_dataset(self._obj, reference, variable, **options)
