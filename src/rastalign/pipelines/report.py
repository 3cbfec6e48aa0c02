"""The alignment report: JSON with the model, tie points, residuals, quality and timings; optional PNG."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rastalign.sinks.atomic import atomic_write_bytes, atomic_write_text


def build_report(est, model, stats, mov, fix, grid, on_moving_grid, timings) -> dict:
    from rastalign import __version__

    return {
        "rastalign_version": __version__,
        "moving": {"path": mov.path, "shape": list(mov.shape), "bands": mov.count, "dtype": mov.dtype,
                   "pixel_size": mov.resolution},
        "fixed": {"path": fix.path, "shape": list(fix.shape), "bands": fix.count, "pixel_size": fix.resolution},
        "output": {"shape": list(grid.shape), "transform": list(grid.transform),
                   "on_moving_grid": on_moving_grid, **{k: v for k, v in stats.items()}},
        "correction": plain_correction(model, mov, grid),
        "quality": est.quality,
        "estimation": est.info,
        "model": model.to_dict(),
        "timings_s": timings,
    }


def plain_correction(model, mov, grid, frame=None) -> dict:
    """What the alignment does to the moving image, stated plainly (what coregix and AROSICS users read first).

    ``shift_px``: how far the correction moves the moving image's content at the centre ``c`` of the output
    grid, ``own(c) - model(c)`` (``own(c)``: the moving pixel at the same place as ``c``, through the two
    georeferences; ``model(c)``: the moving pixel the model samples there), ``(dx, dy)`` in moving pixels,
    x right, y down. It is the correction, the opposite of the misregistration: ``(+2, 0)`` moves the content
    2 px to the right. ``shift_crs``: the same displacement in CRS units along the CRS's axes (the moving
    geotransform's linear part applied to ``shift_px``; east and north on a north-up grid).
    ``rotation_deg`` (from +x towards +y of the frame: counter-clockwise on a north-up map) and ``scale``
    of the affine part applied to the moving image; ``residual_field_max_px``: the largest displacement of
    the residual field (moving pixels) over the output grid, 0 when the model is affine. ``frame`` is
    ``"CRS"``, ``"pixels (neither image is georeferenced)"``, or what the caller names (FITS frames:
    ``"template pixels"``): then the CRS units are pixels and y points down. Because the shift is taken at one point, rotation included, it can differ from a tool's global
    (mean or one-window) shift with the same sign convention (see the documentation's Concepts page).
    """
    from rastalign.geometry.grids import pixel_mapping

    ny, nx = grid.shape
    c = np.array([(nx - 1) / 2.0]), np.array([(ny - 1) / 2.0])
    mx, my = model(*c)
    cx, cy = pixel_mapping(grid, mov)(*c)  # the centre's own place on the moving grid (through PROJ across CRS)
    dx, dy = float(cx[0] - mx[0]), float(cy[0] - my[0])
    lin = np.asarray(mov.pixel_to_world)[:, :2]
    sx, sy = lin @ np.array([dx, dy])
    # the map applied to the moving image, moving world -> output world (x east, y north): L_out inv(A) inv(L_mov)
    a = np.asarray(model.linear)[:, :2]
    m2w = np.asarray(grid.pixel_to_world)[:, :2] @ np.linalg.inv(a) @ np.linalg.inv(lin)
    field_max = model.field_max_px(grid.shape)
    if frame is None:
        frame = "pixels (neither image is georeferenced)" if mov.crs is None and grid.crs is None else "CRS"
    return {"frame": frame, "shift_px": [round(dx, 4), round(dy, 4)],
            "shift_crs": [round(float(sx), 4), round(float(sy), 4)],
            "rotation_deg": round(float(np.degrees(np.arctan2(m2w[1, 0], m2w[0, 0]))), 5),
            "scale": round(float(np.sqrt(abs(np.linalg.det(m2w)))), 6),
            "residual_field_max_px": round(field_max, 4)}


def tiepoint_rows(tp):
    rows = []
    for i in range(len(tp)):
        rows.append({"x_fixed": float(tp.fixed[i, 0]), "y_fixed": float(tp.fixed[i, 1]),
                     "x_moving": float(tp.moving[i, 0]), "y_moving": float(tp.moving[i, 1]),
                     "reliability": float(tp.reliability[i]), "inlier": bool(tp.inlier[i]),
                     "dx_residual": float(tp.residual[i, 0]), "dy_residual": float(tp.residual[i, 1])})
    return rows


def write_report(report, est, work_dir, report_out=None, plot=None):
    """Write tie points (CSV) in the work folder, the report JSON where asked, and the plot."""
    tp = est.tiepoints
    lines = ["x_fixed,y_fixed,x_moving,y_moving,reliability,inlier,dx_residual,dy_residual"]
    for r in tiepoint_rows(tp):
        lines.append(",".join(str(v) for v in r.values()))
    atomic_write_text(Path(work_dir) / "tiepoints.csv", "\n".join(lines) + "\n")
    full = dict(report, tiepoints=tiepoint_rows(tp))
    text = json.dumps(full, indent=2, default=_jsonable)
    atomic_write_text(Path(work_dir) / "report.json", text)
    if report_out:
        atomic_write_text(report_out, text)
    if plot:
        plot_residuals(est, plot)


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def plot_residuals(est, path):
    """The QA figure: the tie points over a thumbnail of the fixed image, coloured by residual, outliers
    marked, the footprint of the moving image; beside it the residual field's magnitude (the non-rigid
    part of the correction) with the inlier residual vectors; the map of the predicted model error (where
    the result can be trusted); and the residual histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tp, q, inputs = est.tiepoints, est.quality, est.info.get("inputs", {})
    inl = tp.inlier
    mag = np.hypot(*tp.residual.T)
    fig, (ax, fx, ex, bx) = plt.subplots(1, 4, figsize=(22, 5.6))
    shape = inputs.get("fixed_shape") or [int(tp.fixed[:, 1].max()) + 1, int(tp.fixed[:, 0].max()) + 1]
    extent = (-0.5, shape[1] - 0.5, shape[0] - 0.5, -0.5)
    thumb = _thumbnail(inputs, shape)
    if thumb is not None:
        lo, hi = np.nanpercentile(thumb, [2, 98])
        ax.imshow(thumb, cmap="gray", vmin=lo, vmax=hi, extent=extent)
    vmax = max(float(np.percentile(mag[inl], 95)) if inl.any() else 1.0, 1e-3)
    sc = ax.scatter(tp.fixed[inl, 0], tp.fixed[inl, 1], c=mag[inl], s=14, cmap="viridis", vmin=0, vmax=vmax,
                    label="inliers")
    ax.scatter(tp.fixed[~inl, 0], tp.fixed[~inl, 1], s=22, c="tab:red", marker="x", label="outliers")
    fp = _footprint(est.model, inputs)
    if fp is not None:
        ax.plot(fp[0], fp[1], color="tab:orange", lw=1.5, label="moving footprint")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_title("tie points on the fixed image (colour: residual px)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(sc, ax=ax, shrink=0.8)
    _field_panel(fx, est.model, tp, inl, shape, extent)
    _error_panel(ex, q.get("predicted_error_px"), extent)
    bx.hist(mag[inl], bins=40, color="tab:blue")
    bx.set_xlabel("residual (moving px)")
    bx.set_title(f"{q['n_inliers']}/{q['n_tie_points']} inliers, rms {q['rms_residual_px']:.3f} px, "
                 f"median {q['median_residual_px']:.3f} px")
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path, dpi=100):
    """Write a matplotlib figure as PNG, published whole: a local file under a temporary name then renamed,
    or an object in one PUT; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _thumbnail(inputs, shape):
    """A decimated fixed image (at most 512 px on its long side), or None when it cannot be read."""
    if not inputs.get("fixed"):
        return None
    from rastalign.errors import RastalignError
    from rastalign.io.raster import inspect_raster
    from rastalign.io.proxy import read_proxy

    f = max(1, int(np.ceil(max(shape) / 512)))
    try:
        img, ok = read_proxy(inspect_raster(inputs["fixed"]), int(inputs.get("fixed_band", 0)), f)
    except RastalignError:
        return None
    return np.where(ok, img, np.nan)


def _footprint(model, inputs):
    """The moving image's border in fixed pixels (through the model's inverse)."""
    ms = inputs.get("moving_shape")
    if not ms:
        return None
    ny, nx = ms
    t = np.linspace(0.0, 1.0, 50)
    bx = np.concatenate([-0.5 + t * nx, np.full(50, nx - 0.5), nx - 0.5 - t * nx, np.full(50, -0.5)])
    by = np.concatenate([np.full(50, -0.5), -0.5 + t * ny, np.full(50, ny - 0.5), ny - 0.5 - t * ny])
    x, y = model.inverse_points(bx, by)
    return np.asarray(x), np.asarray(y)


def _error_panel(ax, predicted, extent):
    """The predicted model error's map (moving px) over the overlap, with its p95 and max."""
    if not predicted:
        ax.set_axis_off()
        return
    x0, y0, x1, y1 = predicted["map_box"]
    cells = np.array([[np.nan if v is None else v for v in row] for row in predicted["map"]], float)
    im = ax.imshow(cells, cmap="inferno", extent=(x0 - 0.5, x1 + 0.5, y1 + 0.5, y0 - 0.5), interpolation="nearest",
                   vmin=0.0)
    ax.figure.colorbar(im, ax=ax, shrink=0.8).set_label("predicted model error (moving px)")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_title(f"predicted error: p95 {predicted['p95']:.3f} px, max {predicted['max']:.3f} px", fontsize=10)


def _field_panel(ax, model, tp, inl, shape, extent):
    """The residual field's magnitude over the fixed grid, and the inlier residual vectors."""
    if model.field is not None:
        gx, gy = np.meshgrid(np.linspace(0, shape[1] - 1, 96), np.linspace(0, shape[0] - 1, 96))
        dx, dy = model.field_at_output(gx, gy)
        im = ax.imshow(np.hypot(dx, dy), cmap="magma", extent=extent)
        ax.figure.colorbar(im, ax=ax, shrink=0.8).set_label("residual field |d| (moving px)")
        ax.set_title("residual field |d| beyond the affine + residuals", fontsize=10)
    else:
        ax.set_facecolor("0.92")
        ax.set_title("affine only (no residual field kept) + residuals", fontsize=10)
    mag = np.hypot(*tp.residual.T)
    scale = 0.05 * max(shape) / max(np.percentile(mag[inl], 95) if inl.any() else 1.0, 1e-3)
    ax.quiver(tp.fixed[inl, 0], tp.fixed[inl, 1], tp.residual[inl, 0], tp.residual[inl, 1], color="tab:cyan",
              angles="xy", scale_units="xy", scale=1.0 / scale, width=0.003)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xlabel(f"residual vectors x{scale:.0f}")
