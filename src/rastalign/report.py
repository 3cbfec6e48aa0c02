"""The alignment report: JSON with the model, tie points, residuals, quality and timings; optional PNG."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .io.atomic import atomic_write_text


def build_report(est, model, stats, mov, fix, grid, est_p, warp_p, timings) -> dict:
    from . import __version__

    return {
        "rastalign_version": __version__,
        "moving": {"path": mov.path, "shape": list(mov.shape), "bands": mov.count, "dtype": mov.dtype,
                   "pixel_size": mov.resolution},
        "fixed": {"path": fix.path, "shape": list(fix.shape), "bands": fix.count, "pixel_size": fix.resolution},
        "output": {"shape": list(grid.shape), "transform": list(grid.transform),
                   "on_moving_grid": warp_p.output_on_moving_grid, **{k: v for k, v in stats.items()}},
        "correction": plain_correction(model, mov, grid),
        "quality": est.quality,
        "estimation": est.info,
        "model": model.to_dict(),
        "timings_s": timings,
    }


def plain_correction(model, mov, grid) -> dict:
    """What the alignment does to the moving image, stated plainly (what coregix and AROSICS users read first).

    ``shift_px`` / ``shift_crs``: how far the moving image content moves at the centre of the output grid,
    ``(dx, dy)`` in moving pixels (x right, y down) and in CRS units; ``rotation_deg`` (counter-clockwise on
    the map, i.e. with y up) and ``scale`` of the affine part applied to the moving image; and the largest
    displacement of the residual field (moving pixels) over the output grid, 0 when the model is affine.
    """
    from .model.affine import apply_affine, compose_affine, invert_affine

    ny, nx = grid.shape
    c = np.array([(nx - 1) / 2.0]), np.array([(ny - 1) / 2.0])
    mx, my = model(*c)
    out_to_mov = compose_affine(invert_affine(mov.pixel_to_world), grid.pixel_to_world)  # same CRS: exact
    same = mov.crs is None or grid.crs is None or _same_crs(mov.crs, grid.crs)
    if same:
        cx, cy = apply_affine(out_to_mov, *c)
        dx, dy = float(cx[0] - mx[0]), float(cy[0] - my[0])
    else:  # across CRS the centre's own position on the moving grid goes through PROJ
        from .grids import pixel_mapping

        cx, cy = pixel_mapping(grid, mov)(*c)
        dx, dy = float(cx[0] - mx[0]), float(cy[0] - my[0])
    lin = np.asarray(mov.pixel_to_world)[:, :2]
    sx, sy = lin @ np.array([dx, dy])
    # the map applied to the moving image, moving world -> output world (x east, y north): L_out inv(A) inv(L_mov)
    a = np.asarray(model.linear)[:, :2]
    m2w = np.asarray(grid.pixel_to_world)[:, :2] @ np.linalg.inv(a) @ np.linalg.inv(lin)
    field_max = 0.0
    if model.field is not None:
        gx, gy = np.meshgrid(np.linspace(0, nx - 1, 65), np.linspace(0, ny - 1, 65))
        fx, fy = model.field_at_output(gx, gy)
        field_max = float(np.hypot(fx, fy).max())
    frame = "pixels (neither image is georeferenced)" if mov.crs is None and grid.crs is None else "CRS"
    return {"frame": frame, "shift_px": [round(dx, 4), round(dy, 4)],
            "shift_crs": [round(float(sx), 4), round(float(sy), 4)],
            "rotation_deg": round(float(np.degrees(np.arctan2(m2w[1, 0], m2w[0, 0]))), 5),
            "scale": round(float(np.sqrt(abs(np.linalg.det(m2w)))), 6),
            "residual_field_max_px": round(field_max, 4)}


def _same_crs(a, b):
    from .grids import same_crs

    return same_crs(a, b)


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
    """Tie points with residual vectors (inliers blue, outliers red) and a residual histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tp = est.tiepoints
    inl = tp.inlier
    mag = np.hypot(*tp.residual.T)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5.5))
    scale = 100.0 / max(np.percentile(mag[inl], 95) if inl.any() else 1.0, 1e-3)
    ax.quiver(tp.fixed[inl, 0], tp.fixed[inl, 1], tp.residual[inl, 0], tp.residual[inl, 1], color="tab:blue",
              angles="xy", scale_units="xy", scale=1.0 / scale, width=0.002, label="inliers")
    ax.scatter(tp.fixed[~inl, 0], tp.fixed[~inl, 1], s=8, c="tab:red", label="outliers")
    ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_title(f"residual vectors x{scale:.0f} (fixed pixels)")
    ax.legend(loc="lower right")
    q = est.quality
    bx.hist(mag[inl], bins=40, color="tab:blue")
    bx.set_xlabel("residual (moving px)")
    bx.set_title(f"{q['n_inliers']}/{q['n_tie_points']} inliers, rms {q['rms_residual_px']:.3f} px, "
                 f"median {q['median_residual_px']:.3f} px")
    fig.tight_layout()
    tmp = str(path) + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    import os

    os.replace(tmp, path)
