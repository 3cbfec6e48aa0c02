"""A stack held in one array: ``stack.coreg.align(reference, dim="time")``.

Every slice along ``dim`` (a ``(y, x)`` or ``(band, y, x)`` array) is estimated against the
reference (slices concurrently, each estimation's reads as dask tasks) and warped lazily by the
accessor's own warp (:func:`rastalign.pipelines.arrays.apply`); the slices are joined along ``dim`` again.
A slice that cannot be aligned becomes all nodata, and says so: the result carries ``coreg_status``
(``"ok"`` or the one-line reason), ``coreg_rms_px``, ``coreg_dx_px`` and ``coreg_dy_px`` coordinates
along ``dim``, and the models as JSON in ``attrs["rastalign_models"]`` (``None`` for a failed slice).
"""
from __future__ import annotations

import json
import numpy as np

from rastalign.errors import InputError, RastalignError
from rastalign.io.arrays import as_array
from rastalign.pipelines.arrays import apply, estimate, warp_options
from rastalign.runtime.scheduler import each_in_threads, parallelism


def align_along(moving, reference, dim, **options):
    """Lazy DataArray: each slice of ``moving`` along ``dim`` aligned onto ``reference``."""
    import dask.array as da
    import xarray as xr

    if dim not in moving.dims:
        raise InputError(f"dim={dim!r} is not a dimension of the array (dims {moving.dims})")
    ref = as_array(reference, moving.name)
    # a stack joined by xr.concat keeps its first file's ``source``: no slice may pass for that file
    slices = [_without_source(moving.isel({dim: i})) for i in range(moving.sizes[dim])]

    def one(s):
        try:
            return estimate(s, ref, evidence=True, **options), ""
        except RastalignError as exc:
            return None, " ".join(str(exc).split())[:300]

    fitted = each_in_threads(lambda k: one(slices[k]), len(slices), min(len(slices), parallelism(), 8))
    warp = warp_options(options)
    parts, status, rms, shift, models = [], [], [], [], []
    for s, (ev, err) in zip(slices, fitted):
        if ev is None:
            ok = next((e for e, _ in fitted if e is not None), None)
            if ok is None:
                raise InputError(f"no slice along {dim!r} could be aligned: {err}")
            template = apply(s, ok[0], None, ref, **warp)
            nodata = template.rio.nodata if template.rio.nodata is not None else np.nan
            parts.append(template.copy(data=da.full(template.shape, nodata, dtype=template.dtype,
                                                    chunks=template.data.chunks)))
            status.append(err)
            rms.append(np.nan)
            shift.append((np.nan, np.nan))
            models.append(None)
            continue
        model, evidence = ev
        parts.append(apply(s, model, None, ref, **warp))
        q = getattr(evidence, "quality", None)  # rasters: an Estimate; FITS arrays: the fit's evidence dict
        status.append("ok")
        rms.append(float(q["rms_residual_px"] if q is not None else evidence["stats"]["rms_px"]))
        shift.append(_centre_shift(model))
        models.append(model.to_json(indent=None))
    out = xr.concat(parts, dim=dim)
    if dim in moving.coords:
        out = out.assign_coords({dim: moving.coords[dim].values})
    sh = np.array(shift, float)
    out = out.assign_coords(coreg_status=(dim, status), coreg_rms_px=(dim, np.array(rms, float)),
                            coreg_dx_px=(dim, sh[:, 0]), coreg_dy_px=(dim, sh[:, 1]))
    out.attrs.pop("rastalign_model", None)
    out.attrs["rastalign_models"] = json.dumps(models)
    return out


def _without_source(da):
    da = da.copy(deep=False)
    da.encoding = {k: v for k, v in da.encoding.items() if k != "source"}
    da.attrs = {k: v for k, v in da.attrs.items() if k not in ("rastalign_path",)}
    return da


def _centre_shift(model):
    """How far the content at the output grid's centre moves, ``(dx, dy)`` moving px (output and moving
    grids coincide for an on-moving-grid result)."""
    ny, nx = model.output_shape
    cx, cy = np.array([(nx - 1) / 2.0]), np.array([(ny - 1) / 2.0])
    mx, my = model(cx, cy)
    return float(cx[0] - mx[0]), float(cy[0] - my[0])
