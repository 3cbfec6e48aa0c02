"""Models seen from other grids: an estimated model rebased onto an output grid (exact between grids of
one CRS, fitted through PROJ between CRS), and the grids an accessor estimate records in its meta, so a
saved model can be applied to arrays on related grids. Pull maps, output px -> moving px, ``(x, y)``."""
from __future__ import annotations

import dataclasses

import numpy as np

from rastalign.errors import InputError
from rastalign.geometry.affine import compose_affine, invert_affine
from rastalign.geometry.grids import GRID_NAMES, Grid, OutputGrid, pixel_mapping, same_crs
from rastalign.model.fit import fit_mapping


def rebase(model, grid: OutputGrid, fixed, max_err=0.002):
    """The estimated model (fixed px -> moving px) seen from ``grid``: exact when the CRS
    match (an affine ``pre``), else fitted through PROJ. Returns ``(model, fit_error_px)``."""
    if grid.pre is not None:
        return model.with_output_grid(grid.pre, grid.shape), 0.0
    to_fixed = pixel_mapping(grid, fixed)
    fitted, err = fit_mapping(lambda x, y: model(*to_fixed(x, y)), grid.shape, max_err=max_err)
    return dataclasses.replace(fitted, moving_shape=model.moving_shape, meta=dict(model.meta)), err


def recorded_grids(model) -> dict:
    """The grids an accessor estimate records in ``model.meta["grids"]``, as ``{"solve", "output", "moving"}
    -> Grid`` (None where not recorded: a model saved before rastalign recorded its grids). Reads the flat layout
    of rastalign 0.1.0 too (``solve_transform``, ``output_transform``, ``moving_transform`` and the solve
    grid's ``crs``; the shapes are the model's own)."""
    g = model.meta.get("grids") or {}
    if any(f"{k}_transform" in g for k in GRID_NAMES):
        shapes = {"solve": None, "output": model.output_shape, "moving": model.moving_shape}
        g = {k: {"shape": shapes[k], "transform": g[f"{k}_transform"], "crs": g.get("crs")}
             for k in GRID_NAMES if g.get(f"{k}_transform")}
    return {k: Grid.from_dict(g[k]) if g.get(k) else None for k in GRID_NAMES}


def with_grids(model, **grids):
    """``model`` recording ``grids`` (``solve``, ``output``, ``moving``: a :class:`Grid` each) in
    ``meta["grids"]`` over the grids it records (written in this version's layout)."""
    drop = {*GRID_NAMES, "crs", *(f"{k}_transform" for k in GRID_NAMES)}  # kept: kind, wcs
    g = {k: v for k, v in (model.meta.get("grids") or {}).items() if k not in drop}
    g.update({k: v.to_dict() for k, v in {**recorded_grids(model), **grids}.items() if v is not None})
    return dataclasses.replace(model, meta={**model.meta, "grids": g})


def rebase_recorded(model, moving, grid=None):
    """``(model, output Grid)``: ``model`` seen from ``grid`` (None: its own output grid) and from the
    ``moving`` :class:`Grid`, through the grids it records (:func:`recorded_grids`): exact onto any grid
    in the solve grid's CRS, and onto a moving grid whose geotransform differs by a scale and offset."""
    rec = recorded_grids(model)
    own = tuple(model.output_shape or ())
    # solve px -> world: recorded, else (a model on the moving grid) through the moving grid
    ws = (rec["solve"].pixel_to_world if rec["solve"] else
          compose_affine(moving.pixel_to_world, invert_affine(model.pre)) if own == moving.shape else None)
    if grid is None:
        out = rec["output"] or (moving if own == moving.shape else None)
        if out is None or not own:
            raise InputError("the model's output grid is unknown or not the moving grid: pass grid=<array on it>")
        m = model
    else:
        if rec["solve"] and rec["solve"].crs and grid.crs and not same_crs(rec["solve"].crs, grid.crs):
            raise InputError("the grid's CRS differs from the model's: reproject it first")
        if ws is None and own != grid.shape:
            raise InputError("cannot relate the model's grid to this grid: estimate the model with the accessor")
        out = grid
        m = with_grids(model if ws is None else
                       model.with_output_grid(compose_affine(invert_affine(ws), grid.pixel_to_world), grid.shape),
                       output=grid)
    mt = rec["moving"]
    if mt is not None and not np.allclose(mt.transform, moving.transform, rtol=0,
                                          atol=1e-9 * max(map(abs, mt.transform))):
        m = _post_compose(m, compose_affine(invert_affine(moving.pixel_to_world), mt.pixel_to_world), moving)
    elif m.moving_shape is not None and tuple(m.moving_shape) != moving.shape:
        raise InputError(f"the model was estimated for a moving image of shape {tuple(m.moving_shape)}; "
                         f"this one is {moving.shape}")
    return m, out


def _post_compose(model, post, moving):
    """Follow ``model`` by the affine ``post`` (old moving px -> px of the ``moving`` grid)."""
    field = model.field
    if field is not None:
        if abs(post[0, 1]) > 1e-12 or abs(post[1, 0]) > 1e-12:
            raise InputError("the moving arrays' grids differ by a rotation: a residual field cannot follow it")
        field = dataclasses.replace(field, coef_x=field.coef_x * post[0, 0], coef_y=field.coef_y * post[1, 1])
    return with_grids(dataclasses.replace(model, affine=compose_affine(post, model.affine), field=field,
                                          moving_shape=moving.shape), moving=moving)
