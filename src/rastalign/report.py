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
        "quality": est.quality,
        "estimation": est.info,
        "model": model.to_dict(),
        "timings_s": timings,
    }


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
