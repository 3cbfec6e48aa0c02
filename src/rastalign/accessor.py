"""The xarray accessor ``coreg``, registered on DataArray and Dataset by ``import rastalign``.

``moving.coreg.align(reference, **options)`` returns a lazy, dask-backed DataArray on the
moving grid (``output_on_moving_grid=False``: the reference grid cropped to the moving
footprint); ``.coreg.estimate(reference)`` returns the model on that same output grid,
recording the grids in ``model.meta["grids"]`` so that ``.coreg.apply(model, grid=...)`` can
re-base it onto another grid of the same CRS or a moving array of another resolution. The
model is the pull map **output pixel -> moving pixel**, ``(x, y)``, integer pixel centres.

Thin: estimation calls :func:`rastalign.estimate` / :func:`rastalign.estimate_fits` on the
files behind the arrays (a band is written to a temporary file when an array is not
file-backed); the warp is :func:`rastalign.warp.graph.lazy_warp` over the array's dask graph
(each output chunk depends only on the source box it needs), the CLI's own warp, so the
result equals the CLI's output; ``aligned.coreg.to_raster(path)`` writes through the CLI's
sinks. Nothing is read before ``compute``.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import InputError
from .grids import output_grid, rebase as rebase_to_grid
from .io.raster import RasterInfo
from .model.affine import compose_affine, invert_affine, pixel_to_world
from .params import WarpParams, split_options

FITS_TRANSFORM = (1.0, 0.0, -0.5, 0.0, 1.0, -0.5)  # world = pixel (pixel centres at integers)
WARP_KEYS = {f.name for f in dataclasses.fields(WarpParams)}


def _is_fits(da) -> bool:
    return "fits_header" in da.attrs or "rastalign_ext" in da.attrs


def _dims(da):
    """(y dim, x dim) of an array: rioxarray's when it knows them, else the last two."""
    import rioxarray  # noqa: F401 - registers ``.rio``
    try:
        return da.rio.y_dim, da.rio.x_dim
    except Exception:  # noqa: BLE001 - rioxarray raises several kinds when dims are unknown
        return da.dims[-2], da.dims[-1]


def grid_info(da, nodata=None) -> RasterInfo:
    """The grid of ``da`` as a :class:`~rastalign.io.raster.RasterInfo` (FITS: world = pixel)."""
    ydim, xdim = _dims(da)
    shape = (int(da.sizes[ydim]), int(da.sizes[xdim]))
    count = int(np.prod([n for d, n in da.sizes.items() if d not in (ydim, xdim)] or [1]))
    if _is_fits(da):
        t, crs, nd = FITS_TRANSFORM, None, None
    else:
        t = _transform(da, ydim, xdim)
        crs = da.rio.crs.to_wkt() if da.rio.crs is not None else None
        nd = da.rio.nodata
    nd = None if (nodata if nodata is not None else nd) is None else float(nodata if nodata is not None else nd)
    return RasterInfo(str(_source(da) or ""), shape, count, str(da.dtype), tuple(float(v) for v in t), crs, nd,
                      (), "none" if nd is None else "nodata")


def _transform(da, ydim, xdim):
    """rioxarray's transform, recomputed from the coordinates when they disagree (e.g. after coarsen)."""
    t = tuple(da.rio.transform())[:6]
    a, b, c, d, e, f = t
    if b == 0 and d == 0 and xdim in da.coords and ydim in da.coords and min(da.shape[-2:]) > 1:
        xs, ys = da.coords[xdim].values, da.coords[ydim].values
        n = np.arange(2) + 0.5
        tol = dict(rtol=0.0, atol=1e-6 * max(abs(a), abs(e)))
        if not (np.allclose(xs[:2], c + a * n, **tol) and np.allclose(ys[:2], f + e * n, **tol)):
            t = tuple(da.rio.transform(recalc=True))[:6]
    return t


def _source(da):
    return da.encoding.get("source") or da.attrs.get("rastalign_path")


def _file_backed(da, info):
    """The file behind ``da`` when the array still has that file's grid, else None."""
    path = _source(da)
    if not path or not Path(path).is_file():
        return None
    from .io.fits import inspect_fits
    from .io.raster import inspect_raster
    if _is_fits(da):
        return path if tuple(inspect_fits(path, da.attrs.get("rastalign_ext")).shape) == info.shape else None
    f = inspect_raster(path)
    same = f.shape == info.shape and f.count == info.count and np.allclose(f.transform, info.transform)
    return path if same else None


def _as3d(da):
    ydim, xdim = _dims(da)
    other = [d for d in da.dims if d not in (ydim, xdim)]
    if len(other) > 1:
        raise InputError(f"the accessor takes (y, x) or (band, y, x) arrays; got dims {da.dims}")
    arr = da.transpose(*other, ydim, xdim).data
    return arr if arr.ndim == 3 else arr[None]


def _write_band(da, band, path, nodata):
    """Write one band of ``da`` as a GeoTIFF (or FITS) file for estimation."""
    arr = np.asarray(_as3d(da)[band])
    if _is_fits(da):
        from astropy.io import fits
        fits.PrimaryHDU(arr.astype(np.float32)).writeto(path)
        return path
    import rasterio
    from affine import Affine
    info = grid_info(da, nodata)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype=arr.dtype, crs=info.crs, transform=Affine(*info.transform), nodata=info.nodata,
                       tiled=arr.shape[0] >= 256 and arr.shape[1] >= 256) as ds:
        ds.write(arr, 1)
    return path


def _split(fits, options):
    """(estimation options, WarpParams, extra) for the kind of array."""
    options = dict(options)
    if not fits:
        return split_options(options)
    from .astro import DEFAULTS, resampling_for
    options.pop("moving_nodata", None)  # FITS invalid pixels are NaN
    if options.pop("correction", "resample") not in ("resample", "wcs"):
        raise InputError("FITS arrays take correction='resample' or 'wcs'")
    est = {k: options.pop(k) for k in list(options) if k in DEFAULTS or k in ("source_ext", "template_ext")}
    warp = {k: options.pop(k) for k in list(options) if k in WARP_KEYS}
    if "resampling" not in warp:
        warp["resampling"] = resampling_for(est.get("interp_order", DEFAULTS["interp_order"]))
    if options:
        raise InputError(f"unknown option(s) for FITS arrays: {', '.join(sorted(options))}")
    return est, WarpParams(**warp), {}


def estimate(moving, reference, evidence=False, **options):
    """Model (output px -> moving px) for aligning ``moving`` onto ``reference``; see the module doc.

    With ``evidence=True`` returns ``(model, evidence)``: the :class:`~rastalign.Estimate`
    (tie points, quality) for raster arrays, the fit evidence dict for FITS arrays.
    """
    reference = _as_array(reference, moving.name)
    fits = _is_fits(moving)
    est_o, warp_p, rest = _split(fits, options)
    mov, ref = grid_info(moving), grid_info(reference)
    with tempfile.TemporaryDirectory(prefix="rastalign_acc_") as tmp:
        if fits:
            model, ev = _estimate_fits(moving, reference, est_o, tmp)
        else:
            model, ev = _estimate_raster(moving, reference, est_o, tmp)
    if fits:
        on_moving = warp_p.output_on_moving_grid
        if on_moving:
            model = model.with_output_grid(output_grid(mov, ref, True, False).pre, mov.shape)
        wcs = reference.attrs.get("wcs")
        out_t, extra = (mov.transform if on_moving else FITS_TRANSFORM), {
            "wcs": wcs.to_header_string(relax=True) if wcs is not None else None}
    else:
        grid = output_grid(mov, ref, warp_p.output_on_moving_grid, est_o.clip_fixed_to_moving)
        model, _ = rebase_to_grid(model, grid, ref)  # exact in one CRS, fitted through PROJ across CRS
        out_t, extra = grid.transform, {}
        if rest.get("plot"):
            from .report import plot_residuals
            plot_residuals(ev, rest["plot"])
    grids = {"solve_transform": list(ref.transform), "output_transform": list(out_t),
             "moving_transform": list(mov.transform), "crs": ref.crs, "kind": "fits" if fits else "raster", **extra}
    model = dataclasses.replace(model, meta={**model.meta, "grids": grids})
    return (model, ev) if evidence else model


def _estimate_raster(moving, reference, est_p, tmp):
    from .pipeline import estimate as _estimate
    paths, bands = [], {}
    for role, da, band, nd in (("moving", moving, est_p.moving_band, est_p.moving_nodata),
                               ("fixed", reference, est_p.fixed_band, est_p.fixed_nodata)):
        path = _file_backed(da, grid_info(da))
        if path is None:
            if not 0 <= band < grid_info(da).count:
                raise InputError(f"{role} band index {band} is out of range (indexes are 0-based)")
            path = _write_band(da, band, os.path.join(tmp, f"{role}.tif"), nd)
            bands[f"{role}_band_index"] = 0
        paths.append(path)
    est = _estimate(paths[0], paths[1], dataclasses.replace(est_p, **bands))
    return est.model, est


def _estimate_fits(moving, reference, o, tmp):
    from .astro import estimate_fits
    o, paths = dict(o), []
    for role, da in (("source", moving), ("template", reference)):
        path = _file_backed(da, grid_info(da))
        if path is None:
            path = _write_band(da, 0, os.path.join(tmp, f"{role}.fits"), None)
            o[f"{role}_ext"] = 0
        else:
            o.setdefault(f"{role}_ext", da.attrs.get("rastalign_ext"))
        paths.append(path)
    return estimate_fits(paths[0], paths[1], **o)


def rebase(model, moving_info, grid=None):
    """``(model, output grid info)``: ``model`` seen from ``grid`` (None: its own output grid) and ``moving_info``."""
    g, pre = model.meta.get("grids", {}), np.asarray(model.pre, float)
    own = tuple(model.output_shape or ())
    ws = (pixel_to_world(g["solve_transform"]) if g.get("solve_transform") else  # solve px -> world
          compose_affine(moving_info.pixel_to_world, invert_affine(pre)) if own == moving_info.shape else None)
    if grid is None:
        out_t = g.get("output_transform") or (moving_info.transform if own == moving_info.shape else None)
        if out_t is None or not own:
            raise InputError("the model's output grid is unknown or not the moving grid: pass grid=<array on it>")
        out = dataclasses.replace(moving_info, shape=own, transform=tuple(out_t), crs=g.get("crs", moving_info.crs))
        m = model
    else:
        from .grids import same_crs
        if g.get("crs") and grid.crs and not same_crs(g["crs"], grid.crs):
            raise InputError("the grid's CRS differs from the model's: reproject it first")
        if ws is None and own != grid.shape:
            raise InputError("cannot relate the model's grid to this grid: estimate the model with the accessor")
        out = grid
        m = model if ws is None else model.with_output_grid(compose_affine(invert_affine(ws), grid.pixel_to_world),
                                                            grid.shape)
    mt = g.get("moving_transform")
    if mt is not None and not np.allclose(mt, moving_info.transform, rtol=0, atol=1e-9 * max(map(abs, mt))):
        m = _post_compose(m, compose_affine(invert_affine(moving_info.pixel_to_world), pixel_to_world(mt)), moving_info)
    elif m.moving_shape is not None and tuple(m.moving_shape) != moving_info.shape:
        raise InputError(f"the model was estimated for a moving grid of shape {tuple(m.moving_shape)}, "
                         f"this array is {moving_info.shape}")
    return m, out


def _post_compose(model, post, moving_info):
    """Follow ``model`` by the affine ``post`` (old moving px -> new moving px)."""
    field = model.field
    if field is not None:
        if abs(post[0, 1]) > 1e-12 or abs(post[1, 0]) > 1e-12:
            raise InputError("the moving arrays' grids differ by a rotation: a residual field cannot follow it")
        field = dataclasses.replace(field, coef_x=field.coef_x * post[0, 0], coef_y=field.coef_y * post[1, 1])
    g = dict(model.meta.get("grids", {}), moving_transform=list(moving_info.transform))
    return dataclasses.replace(model, affine=compose_affine(post, model.affine), field=field,
                               moving_shape=moving_info.shape, meta={**model.meta, "grids": g})


def apply(moving, model, grid=None, reference=None, **options):
    """Warp ``moving`` (DataArray) with ``model`` onto ``grid`` (a DataArray on the output grid, or None)."""
    fits = _is_fits(moving)
    correction = options.pop("correction", "resample")
    _, warp_p, _ = _split(fits, options)
    if correction != "resample":  # the moving array itself, its georeference corrected
        from .array_correction import corrected
        return corrected(moving, model, correction, fits, reference)
    nd_in = options.get("moving_nodata")
    mov = grid_info(moving, nd_in)
    m, out = rebase(model, mov, None if grid is None else grid_info(grid))
    dtype = np.dtype("float32") if fits else moving.dtype
    from .pipeline import default_output_nodata  # as the CLI: given, else the file's, else reference's, else 0
    ref = None if reference is None else grid_info(reference)
    own = dataclasses.replace(grid_info(moving), dtype=str(dtype))
    nd_out = np.nan if fits else default_output_nodata(own, ref, warp_p.output_nodata)
    from .warp.graph import lazy_warp
    data = lazy_warp(_as3d(moving), m, out.shape, warp_p, dtype, nd_out, source_nodata=mov.nodata,
                     range_dtype=moving.dtype)
    res = _wrap(moving, data, m, out, grid, nd_out, fits)
    res.attrs["rastalign_model"] = m.to_json(indent=None)
    return res


def to_raster(aligned, path, format=None, overwrite=False, progress=False):
    """Write a (lazy) aligned DataArray through the CLI's sinks: tiled, deflated GeoTIFF or COG with
    the model tag, FITS, or Zarr (``format`` any case, else from the suffix); computed by the active
    dask scheduler, published only when complete. Returns the sink's statistics."""
    from .io.atomic import check_output_path
    from .io.sinks import write_output
    from .params import output_format_for

    fmt = output_format_for(path, format)
    check_output_path(path, [_source(aligned)], overwrite)
    info = grid_info(aligned)
    arr = _as3d(aligned)
    if not hasattr(arr, "dask"):
        import dask.array as da
        arr = da.from_array(np.asarray(arr), chunks=(-1, 2048, 2048))
    model = aligned.attrs.get("rastalign_model")
    wcs = aligned.attrs.get("wcs")
    from .progress import run_progress

    with run_progress(progress):
        return write_output(arr, path, fmt, info, info.nodata,
                            tags={"RASTALIGN_MODEL": model[:30000]} if model else None,
                            fits_header=aligned.attrs.get("fits_header"),
                            wcs_header=None if wcs is None else wcs.to_header(relax=True),
                            fits_cards={"RAMODEL": "rastalign"} if model else None)


def _wrap(moving, data, model, out, grid, nodata, fits):
    ydim, xdim = _dims(moving)
    other = [d for d in moving.dims if d not in (ydim, xdim)]
    data, dims = (data if other else data[0]), (*other, ydim, xdim)
    coords = {d: moving.coords[d] for d in other if d in moving.coords}
    attrs = {k: v for k, v in moving.attrs.items() if k not in ("rastalign_path", "rastalign_ext", "_FillValue")}
    same = out.shape == grid_info(moving).shape and np.allclose(out.transform, grid_info(moving).transform)
    if fits:
        coords.update({ydim: np.arange(out.shape[0]), xdim: np.arange(out.shape[1])})
        from .io.fits import shifted_wcs
        attrs["wcs"] = grid.attrs.get("wcs") if grid is not None else shifted_wcs(
            model.meta.get("grids", {}).get("wcs"), model.pre)
        return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name=moving.name)
    like = moving if same else grid if grid is not None and grid_info(grid).shape == out.shape else None
    if like is not None:
        coords.update({ydim: like.coords[ydim].values, xdim: like.coords[xdim].values})
    else:
        a, b, c, d, e, f = out.transform
        coords.update({xdim: c + a * (np.arange(out.shape[1]) + 0.5), ydim: f + e * (np.arange(out.shape[0]) + 0.5)})
    res = xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name=moving.name)
    from affine import Affine
    res = res.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim, inplace=False)
    res = res.rio.write_crs(out.crs) if out.crs is not None else res
    return res.rio.write_transform(Affine(*out.transform)).rio.write_nodata(nodata, encoded=False)


def _spatial_vars(ds):
    return [k for k, v in ds.data_vars.items() if v.ndim >= 2]


def _as_array(obj, name=None):
    if isinstance(obj, xr.Dataset):
        names = _spatial_vars(obj)
        return obj[name if name in names else names[0]]
    return obj


def _warp_options(options):
    return {k: v for k, v in options.items() if k in WARP_KEYS or k == "moving_nodata"}


@xr.register_dataarray_accessor("coreg")
class CoregAccessor:
    """``da.coreg``: align this (moving) array onto a reference; see :mod:`rastalign.accessor`."""

    def __init__(self, obj):
        self._obj = obj

    def estimate(self, reference, evidence=False, **options):
        """The :class:`~rastalign.AlignmentModel` (output px -> moving px) on the output grid the options choose."""
        return estimate(self._obj, reference, evidence=evidence, **options)

    def apply(self, model, grid=None, **options):
        """Lazy DataArray: this array warped by ``model`` onto ``grid`` (None: the model's own output grid)."""
        return apply(self._obj, model, grid, **options)

    def align(self, reference, dim=None, **options):
        """Estimate and apply: a lazy, dask-backed DataArray on the moving grid (or the reference's); with
        ``dim`` (e.g. ``"time"``) each slice along it is aligned (see :mod:`rastalign.stack_array`)."""
        if dim is not None:
            from .stack_array import align_along
            return align_along(self._obj, reference, dim, **options)
        model = self.estimate(reference, **options)
        return apply(self._obj, model, None, _as_array(reference, self._obj.name), **_warp_options(options))

    def to_raster(self, path, format=None, overwrite=False, progress=False):
        """Write this (aligned, lazy) array as the CLI would: tiled deflated GeoTIFF / COG with the model
        tag, FITS or Zarr (``format`` any case, else from the suffix)."""
        return to_raster(self._obj, path, format, overwrite, progress)


@xr.register_dataset_accessor("coreg")
class CoregDatasetAccessor:
    """``ds.coreg``: every variable with (y, x) dims gets the same model, estimated on ``variable``."""

    def __init__(self, obj):
        self._obj = obj

    def estimate(self, reference, variable=None, evidence=False, **options):
        moving = self._obj[variable or _spatial_vars(self._obj)[0]]
        return estimate(moving, _as_array(reference, moving.name), evidence=evidence, **options)

    def apply(self, model, grid=None, reference=None, **options):
        grid = None if grid is None else _as_array(grid)
        ref = None if reference is None else _as_array(reference)
        return xr.Dataset({k: apply(self._obj[k], model, grid, ref, **options) for k in _spatial_vars(self._obj)},
                          attrs=dict(self._obj.attrs))

    def align(self, reference, variable=None, **options):
        model = self.estimate(reference, variable=variable, **options)
        return self.apply(model, None, reference, **_warp_options(options))
