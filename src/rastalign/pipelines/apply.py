"""Warp a moving raster with a model and write it: :func:`apply`, the second half of every raster alignment,
and :func:`apply_saved`, the ``rastalign apply`` command (a model saved earlier, on the grid it recorded)."""
from __future__ import annotations

import numpy as np

from rastalign.errors import InputError
from rastalign.io.raster import inspect_raster
from rastalign.model.model import AlignmentModel
from rastalign.params import WarpParams, output_format_for, split_options
from rastalign.runtime import running


def apply(moving_image_path, model: AlignmentModel, output_image_path, grid, params: WarpParams,
          moving_nodata=None, output_nodata=None, fixed_info=None, output_format=None) -> dict:
    """Warp every band of the moving image (a path, or its inspected :class:`~rastalign.io.raster.RasterInfo`)
    onto ``grid`` with ``model`` (output px -> moving px) and write it in ``output_format`` (else from the
    suffix) under the active dask scheduler."""
    from rastalign.sinks.carried import Carried
    from rastalign.sinks.fits import fits_dtype
    from rastalign.sinks.output import default_output_nodata, write_output
    from rastalign.io.sources import RasterSource
    from rastalign.warp.graph import lazy_warp, prefilter_size

    mov = moving_image_path if getattr(moving_image_path, "grid", None) is not None else \
        inspect_raster(moving_image_path)
    fmt = output_format_for(output_image_path, output_format)
    nodata = default_output_nodata(mov, fixed_info, output_nodata)
    dtype = fits_dtype(mov.dtype) if fmt == "FITS" else mov.dtype
    src = RasterSource(str(mov.path), tuple(mov.shape), mov.count, mov.dtype, moving_nodata)
    arr = lazy_warp(src, model, grid.shape, params, dtype, nodata, range_dtype=mov.dtype)
    carried = Carried(model=model.to_json(indent=None), descriptions=mov.descriptions, like=mov.path)
    stats = write_output(arr, output_image_path, fmt, grid, nodata, carried)
    stats.update({"prefilter_box_px": prefilter_size(model), "n_chunks": int(np.prod(arr.numblocks)),
                  "chunks": [list(c) for c in arr.chunks[1:]], "output_nodata": nodata})
    return stats


def apply_saved(model, moving_image, output_image, like=None, **options) -> dict:
    """Warp ``moving_image`` (a raster) with ``model`` (an :class:`AlignmentModel`, or a model file's path or
    URL) onto the grid the model recorded (``like``: a raster on the fixed image's grid, for a model that
    recorded none), or, with ``correction="georef"``, write the moving file (or a ``.vrt``) with the model as
    its georeference. Options: the warp's, the output's and the run's (:func:`rastalign.params.split_options`),
    ``moving_nodata``. Returns the sink's statistics."""
    from rastalign.io.fits import is_fits_file
    from rastalign.io.models import load_model
    from rastalign.model.rebase import recorded_grids
    from rastalign.runtime.progress import stage
    from rastalign.sinks.atomic import check_output_path

    s = split_options(dict(options, like=like))
    inputs = [moving_image, None if isinstance(model, AlignmentModel) else model, like]
    model = model if isinstance(model, AlignmentModel) else load_model(model)
    if is_fits_file(moving_image):
        raise InputError("rastalign apply warps rasters (GeoTIFF, COG, any GDAL raster); a FITS frame is aligned "
                         "by align-fits, or from Python with its model through the accessor (.coreg.apply)")
    mov = inspect_raster(moving_image)
    check_output_path(output_image, inputs, s.output.overwrite)
    if model.output_shape is None:
        raise InputError("the model has no output grid shape: estimate it with rastalign >= 0.1")
    if model.moving_shape is not None and tuple(model.moving_shape) != tuple(mov.shape) and \
            not recorded_grids(model)["moving"]:
        raise InputError(f"the model was estimated for a moving image of shape {tuple(model.moving_shape)}; "
                         f"{moving_image} is {tuple(mov.shape)}")
    if s.output.correction == "georef":  # the moving file (or a .vrt of it) with the model as its georeference
        from rastalign.sinks.georef import check_georef_output, write_georef

        check_georef_output(output_image, s.output, s.extra)
        return write_georef(moving_image, model, mov, output_image)
    model, grid = _saved_grid(model, mov, None if like is None else inspect_raster(like))
    output_format_for(output_image, s.output.output_format)
    with running(s.run):
        stage("warp + write")
        return apply(moving_image, model, output_image, grid, s.warp, s.estimate.moving_nodata, s.warp.output_nodata,
                     output_format=s.output.output_format)


def _saved_grid(model, mov, like):
    """``(model, grid)``: the grid a saved model recorded (seen from ``like`` when given; the model rebased
    onto it), else ``like``'s, else the moving grid, each checked against the model's output shape."""
    from rastalign.model.rebase import rebase_recorded, recorded_grids

    if any(recorded_grids(model).values()):  # any grid of the fixed image's frame: like, else the model's own
        model, grid = rebase_recorded(model, mov.grid, None if like is None else like.grid)
        # the raster's own Grid where it is that grid: it carries the raster's AREA_OR_POINT
        return model, next((g for g in (like.grid if like else None, mov.grid) if g == grid), grid)
    if like is not None:
        if tuple(like.shape) != tuple(model.output_shape):
            raise InputError(f"--like grid {like.shape} differs from the model's output grid {model.output_shape} "
                             f"(a model saved before rastalign recorded its grids applies to its own grid only)")
        return model, like.grid
    if tuple(mov.shape) != tuple(model.output_shape):
        raise InputError(f"the model's output grid {tuple(model.output_shape)} is not the moving grid: give "
                         f"--like with a raster on the grid the model was estimated on (its fixed image)")
    return model, mov.grid
