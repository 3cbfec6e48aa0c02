"""Estimate, apply and write for xarray arrays: the logic behind the accessor ``coreg``.

:func:`estimate` calls :func:`rastalign.estimate` / :func:`rastalign.estimate_fits` on the files behind
the arrays (a band is written to a temporary file when an array is not file-backed) and records the
solve, output and moving grids in ``model.meta["grids"]`` (:func:`~rastalign.model.rebase.recorded_grids`) so
that :func:`apply` can re-base the model onto another grid of the same CRS or a moving array of another
resolution. :func:`apply` is :func:`rastalign.warp.graph.lazy_warp` over the array's dask graph (each
output chunk depends only on the source box it needs), the CLI's own warp, so the result equals the
CLI's output; or, with ``correction="georef"`` / ``"wcs"``, the moving array itself with its georeference
corrected (:func:`corrected`). :func:`to_raster` writes through the CLI's sinks. The model is the pull map
**output pixel -> moving pixel**, ``(x, y)``, integer pixel centres. Nothing is read before ``compute``
but the estimation proxies.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from rastalign.io.arrays import array_grid, array_info, array_raster, as3d, as_array, dims, file_backed, \
    is_fits_array, on_grid, source, spatial_vars
from rastalign.errors import InputError
from rastalign.geometry.grids import Grid, output_grid
from rastalign.model.rebase import rebase, rebase_recorded
from rastalign.params import WarpParams, split_options

def _following_the_source(warp_p, moving, out_shape):
    """Unless told otherwise (``chunks``, ``split_factor``), an aligned array is chunked as the moving array
    was opened (its chunk size), with no sliver chunk at the far edges (see
    :func:`~rastalign.warp.plan.edges_without_sliver`)."""
    chunks = getattr(moving, "chunks", None)
    if warp_p.chunks is not None or warp_p.split_factor is not None or not chunks:
        return warp_p
    from rastalign.warp.plan import edges_without_sliver

    ydim, xdim = dims(moving)
    rows, cols = chunks[moving.dims.index(ydim)], chunks[moving.dims.index(xdim)]
    edges = [np.diff(edges_without_sliver(n, size[0])) for n, size in zip(out_shape, (rows, cols))]
    return dataclasses.replace(warp_p, chunks=tuple(tuple(int(v) for v in e) for e in edges))


WARP_KEYS = {f.name for f in dataclasses.fields(WarpParams)} | {"correction", "moving_nodata"}


def _split(fits, options):
    """The :class:`~rastalign.params.Settings` for the kind of array: the one validator, given the array's own
    kind (FITS arrays have no nodata: their invalid pixels are NaN)."""
    options = dict(options)
    if fits:
        options.pop("moving_nodata", None)
    return split_options(options, "fits" if fits else "raster")


def warp_options(options):
    """The options of ``options`` that :func:`apply` takes."""
    return {k: v for k, v in options.items() if k in WARP_KEYS}


def estimate(moving, reference, evidence=False, **options):
    """Model (output px -> moving px) for aligning ``moving`` onto ``reference``; see the module doc.

    With ``evidence=True`` returns ``(model, evidence)``: the :class:`~rastalign.Estimate`
    (tie points, quality) for raster arrays, the fit evidence dict for FITS arrays.
    """
    reference = as_array(reference, moving.name)
    fits = is_fits_array(moving)
    s = _split(fits, options)
    est_o, rest = s.estimate, s.extra
    mov, ref = array_info(moving), array_info(reference)
    model, ev = _estimate_fits(moving, reference, est_o, rest) if fits else _estimate_raster(moving, reference, est_o)
    solve, extra = ref.grid, {}
    if fits:
        on_moving = s.output.output_on_moving_grid
        if on_moving:
            model = model.with_output_grid(output_grid(mov, ref, True, False).pre, mov.shape)
        out = mov.grid if on_moving else Grid.pixel_frame(model.output_shape)
        wcs = reference.attrs.get("wcs")
        extra = {"wcs": wcs.to_header_string(relax=True) if wcs is not None else None}
    else:
        out = output_grid(mov, ref, s.output.output_on_moving_grid, est_o.clip_fixed_to_moving)
        model, _ = rebase(model, out, ref)  # exact in one CRS, fitted through PROJ across CRS
        if out.pre is None:  # fitted: the model's solve frame is the output grid
            solve = out
        if rest.get("plot"):
            from rastalign.pipelines.report import plot_residuals
            plot_residuals(ev, rest["plot"])
    grids = {"kind": "fits" if fits else "raster", "solve": solve.to_dict(), "output": out.to_dict(),
             "moving": mov.grid.to_dict(), **extra}
    model = dataclasses.replace(model, meta={**model.meta, "grids": grids})
    return (model, ev) if evidence else model


def _estimate_raster(moving, reference, est_p):
    """The pair's estimation on each array's file when it still holds that file's pixels (its overviews and
    tiles serve the proxies), else on the array itself (no file is written)."""
    from rastalign.pipelines.pair import estimate as _estimate

    inputs = [file_backed(da, array_info(da)) or array_raster(da) for da in (moving, reference)]
    est = _estimate(inputs[0], inputs[1], est_p)
    return est.model, est


def _estimate_fits(moving, reference, star, rest):
    """The star fit on each array's file (and HDU) when it still holds that file's pixels, else on the array
    itself (no file is written)."""
    from rastalign.pipelines.fits_pair import estimate_fits

    o = {**dataclasses.asdict(star), **{k: rest[k] for k in ("source_ext", "template_ext") if k in rest}}
    frames = []
    for role, da in (("source", moving), ("template", reference)):
        path = file_backed(da, array_info(da))
        if path is not None:
            o.setdefault(f"{role}_ext", da.attrs.get("rastalign_ext"))
        frames.append(path or array_raster(da))
    return estimate_fits(frames[0], frames[1], **o)

def apply(moving, model, grid=None, reference=None, **options):
    """Warp ``moving`` (DataArray) with ``model`` onto ``grid`` (a DataArray on the output grid, or None:
    the model's own), lazily; ``correction="georef"`` (rasters) or ``"wcs"`` (FITS) returns ``moving``
    with its georeference corrected instead (:func:`corrected`)."""
    fits = is_fits_array(moving)
    correction = options.pop("correction", "resample")
    warp_p = _split(fits, options).warp
    if correction != "resample":  # the moving array itself, its georeference corrected
        return corrected(moving, model, correction, fits, reference)
    mov = array_info(moving, options.get("moving_nodata"))
    m, out = rebase_recorded(model, mov.grid, None if grid is None else array_grid(grid))
    dtype = np.dtype("float32") if fits else moving.dtype
    wcs = None
    if fits:
        from rastalign.io.fits_cards import shifted_wcs
        nd_out = np.nan
        wcs = grid.attrs.get("wcs") if grid is not None else shifted_wcs(m.meta.get("grids", {}).get("wcs"), m.pre)
    else:  # as the CLI: given, else the file's, else the reference's, else 0
        from rastalign.sinks.output import default_output_nodata
        ref = None if reference is None else array_info(reference)
        nd_out = default_output_nodata(dataclasses.replace(array_info(moving), dtype=str(dtype)), ref,
                                       warp_p.output_nodata)
    from rastalign.warp.graph import lazy_warp
    warp_p = _following_the_source(warp_p, moving, out.shape)
    data = lazy_warp(as3d(moving), m, out.shape, warp_p, dtype, nd_out, source_nodata=mov.nodata,
                     range_dtype=moving.dtype)
    res = on_grid(moving, data, out, nd_out, like=grid, wcs=wcs)
    res.attrs["rastalign_model"] = m.to_json(indent=None)
    return res


def align(moving, reference, **options):
    """Estimate and apply: a lazy, dask-backed DataArray on the moving grid (or the reference's); a stack
    along a dimension is :func:`rastalign.pipelines.array_stack.align_along`."""
    model = estimate(moving, reference, **options)
    return apply(moving, model, None, as_array(reference, moving.name), **warp_options(options))


def estimate_dataset(ds, reference, variable=None, evidence=False, **options):
    """:func:`estimate` on the Dataset's ``variable`` (None: its first variable with (y, x) dims)."""
    moving = ds[variable or spatial_vars(ds)[0]]
    return estimate(moving, as_array(reference, moving.name), evidence=evidence, **options)


def apply_dataset(ds, model, grid=None, reference=None, **options):
    """:func:`apply` to every variable of the Dataset with (y, x) dims."""
    import xarray as xr
    grid = None if grid is None else as_array(grid)
    ref = None if reference is None else as_array(reference)
    return xr.Dataset({k: apply(ds[k], model, grid, ref, **options) for k in spatial_vars(ds)}, attrs=dict(ds.attrs))


def align_dataset(ds, reference, variable=None, **options):
    """Every variable with (y, x) dims aligned with the one model estimated on ``variable``."""
    model = estimate_dataset(ds, reference, variable=variable, **options)
    return apply_dataset(ds, model, None, reference, **warp_options(options))


def corrected(moving, model, correction, fits, reference=None):
    """``moving`` with the correction of ``model`` (output px -> moving px, as :func:`estimate` makes it)
    in its georeference, every pixel untouched, as ``--correction georef`` / ``--correction wcs`` do for
    files: a corrected transform (rasters) or a WCS with SIP (FITS arrays)."""
    info = array_grid(moving)
    if fits:
        if correction != "wcs":
            raise InputError(f"FITS arrays take correction='resample' or 'wcs'; got {correction!r}")
        from astropy.io import fits as pyfits

        from rastalign.sinks.wcs import fit_wcs
        from rastalign.io.fits_cards import wcs_of

        header = model.meta.get("grids", {}).get("wcs")
        template = None if not header else wcs_of(pyfits.Header.fromstring(header))
        # the estimate's own frame: template px -> source px (the accessor may have rebased it onto the moving grid)
        shape = None if reference is None else array_grid(reference).shape
        base = dataclasses.replace(model, pre=np.eye(3)[:2], output_shape=shape)
        wcs, stats = fit_wcs(base, info.shape, template)
        out = moving.copy(deep=False)
        out.attrs = dict(moving.attrs, wcs=wcs, rastalign_correction=json.dumps(dict(stats, correction="wcs")))
        return out
    if correction != "georef":
        raise InputError(f"raster arrays take correction='resample' or 'georef'; got {correction!r}")
    from affine import Affine

    from rastalign.sinks.georef import TOLERANCE_PX, corrected_transform

    departure = model.field_max_px(info.shape)
    if departure > TOLERANCE_PX:
        raise InputError(f"the residual field departs from an affine by up to {departure:.3f} px: an array's "
                         f"transform cannot hold it; use correction='resample' (or GCPs: vhr-align-image-pair "
                         f"--correction georef)")
    new = Grid(info.shape, corrected_transform(model, info), info.crs)
    ydim, xdim = dims(moving)
    xs, ys = new.coords()
    out = moving.assign_coords({xdim: xs, ydim: ys}).rio.write_transform(Affine(*new.transform))
    out.attrs["rastalign_correction"] = json.dumps({"correction": "georef", "max_departure_px": departure})
    return out


def to_raster(aligned, path, format=None, overwrite=False, progress=False):
    """Write a (lazy) aligned DataArray through the CLI's sinks: tiled, deflated GeoTIFF or COG with
    the model tag, FITS, or Zarr (``format`` any case, else from the suffix); computed by the active
    dask scheduler, published only when complete. Returns the sink's statistics."""
    from rastalign.sinks.atomic import check_output_path
    from rastalign.sinks.carried import Carried
    from rastalign.sinks.output import write_output
    from rastalign.params import output_format_for
    from rastalign.runtime.progress import run_progress

    fmt = output_format_for(path, format)
    check_output_path(path, [source(aligned)], overwrite)
    info = array_info(aligned)
    arr = as3d(aligned)
    if not hasattr(arr, "dask"):
        import dask.array as da
        arr = da.from_array(np.asarray(arr), chunks=(-1, 2048, 2048))
    wcs = aligned.attrs.get("wcs")
    carried = Carried(model=aligned.attrs.get("rastalign_model"), header=aligned.attrs.get("fits_header"),
                      wcs_header=None if wcs is None else wcs.to_header(relax=True))
    with run_progress(progress):
        return write_output(arr, path, fmt, info.grid, info.nodata, carried)
