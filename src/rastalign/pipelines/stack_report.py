"""A stack's report: the row of each scene (:func:`scene_row`, :func:`acquired`),
``stack_report.json`` and ``.csv`` (a row per scene) and ``stack_report.png`` (shift and RMS per
scene, in acquisition order when every scene's date is known, failures marked)."""
from __future__ import annotations

import csv
import io
import json
import logging
from typing import Optional

from rastalign.sinks.atomic import atomic_write_text
from rastalign.io.paths import read_text

log = logging.getLogger(__name__)

COLUMNS = ("scene", "status", "error", "exit_code", "acquired", "output", "model", "n_tie_points", "n_inliers",
           "rms_residual_px", "predicted_error_p95_px", "predicted_error_max_px", "dx_px", "dy_px", "dx_crs", "dy_crs", "rotation_deg", "scale", "residual_field",
           "residual_field_max_px", "estimate_s", "warp_write_s", "total_s", "reused")


def load_rows(report_json) -> dict:
    """The rows of an earlier run's ``stack_report.json``, by output path ({} when there is none)."""
    try:
        rows = json.loads(read_text(report_json)).get("scenes", [])
    except Exception:  # noqa: BLE001 - missing or unreadable: the rows are rebuilt as far as possible
        return {}
    return {r["output"]: r for r in rows if r.get("status") == "ok" and r.get("output")}


def write_stack_report(result):
    from rastalign import __version__

    doc = dict(result.summary(), rastalign_version=__version__, execution=result.info,
               columns=list(COLUMNS), scenes=[{k: r.get(k) for k in COLUMNS} for r in result.rows])
    atomic_write_text(result.report_json, json.dumps(doc, indent=2, default=str) + "\n")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in result.rows:
        w.writerow(["" if r.get(k) is None else r.get(k) for k in COLUMNS])
    atomic_write_text(result.report_csv, buf.getvalue())
    if result.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:  # the plot is optional: the JSON and CSV say everything
            log.warning("no stack_report.png: matplotlib is not installed (pip install 'rastalign[plot]'; "
                        "--no-plot silences this)")
            result.plot = None
            return
        plot_stack(result.rows, result.plot, result.kind)


def _order(rows):
    """Acquisition order when every scene's date is known, else the order given; and the x labels."""
    dates = [r.get("acquired") for r in rows]
    if all(dates):
        idx = sorted(range(len(rows)), key=lambda i: dates[i])
        return idx, [dates[i][:10] for i in idx], "acquisition date"
    return list(range(len(rows))), [str(i) for i in range(len(rows))], "scene (order given)"


def plot_stack(rows, path, kind):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rastalign.pipelines.report import save_figure

    idx, labels, xlabel = _order(rows)
    x = np.arange(len(idx))
    ok = np.array([rows[i]["status"] == "ok" and rows[i].get("dx_px") is not None for i in idx], bool)

    def col(name):
        return np.array([rows[i].get(name) if rows[i].get(name) is not None else np.nan for i in idx], float)

    fig, (sx, rx) = plt.subplots(2, 1, figsize=(max(7.0, 0.32 * len(idx) + 3), 6.4), sharex=True)
    unit = "moving px" if kind == "raster" else "source px"
    sx.plot(x[ok], col("dx_px")[ok], "o-", ms=4, label="dx")
    sx.plot(x[ok], col("dy_px")[ok], "s-", ms=4, label="dy")
    sx.set_ylabel(f"shift at the centre ({unit})")
    rx.bar(x[ok] - 0.2, col("rms_residual_px")[ok], width=0.4, color="tab:green", label="inlier RMS")
    rx.bar(x[ok] + 0.2, col("predicted_error_p95_px")[ok], width=0.4, color="tab:orange",
           label="predicted model error p95")
    rx.set_ylabel(f"px ({unit})")
    failed = np.array([rows[i]["status"] == "failed" for i in idx], bool)
    for ax in (sx, rx):
        if failed.any():
            ax.scatter(x[failed], np.zeros(failed.sum()), marker="x", s=60, color="tab:red", zorder=3,
                       label="failed (no output)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    rx.set_xticks(x)
    rx.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    rx.set_xlabel(xlabel)
    n_failed = int(failed.sum())
    sx.set_title(f"stack: {len(rows)} scenes, {len(rows) - n_failed} aligned, {n_failed} failed")
    fig.tight_layout()
    save_figure(fig, path)


# --- the rows ---------------------------------------------------------------------------------

def scene_row(res, shift_crs=None) -> dict:
    """A scene's figures from its :class:`~rastalign.pipelines.result.AlignmentResult`; ``shift_crs`` replaces
    the correction's CRS shift (a FITS frame's, in arcsec; None where the template has no WCS)."""
    c, q, t = res.report["correction"], res.quality, res.report["timings_s"]
    (dx, dy), (sx, sy) = c["shift_px"], c["shift_crs"] if shift_crs is None else shift_crs
    pe = q.get("predicted_error_px") or {}
    return {"n_tie_points": q["n_tie_points"], "n_inliers": q["n_inliers"], "rms_residual_px": q["rms_residual_px"],
            "predicted_error_p95_px": pe.get("p95"), "predicted_error_max_px": pe.get("max"), "dx_px": dx, "dy_px": dy, "dx_crs": sx, "dy_crs": sy, "rotation_deg": c["rotation_deg"],
            "scale": c["scale"], "residual_field": res.model.field is not None,
            "residual_field_max_px": c["residual_field_max_px"], "estimate_s": round(t["estimate_s"], 3),
            "warp_write_s": round(t["warp_write_s"], 3)}


def arcsec_shift(res, template_info):
    """A FITS frame's shift on the sky, arcsec (from the template's CD or PC/CDELT cards), or (None, None)."""
    from rastalign.io.fits_cards import pixel_scale_deg  # from the cards: astropy.wcs costs 0.8 s to load per process

    scale = None if template_info is None else pixel_scale_deg(template_info.header)
    if scale is None:
        return None, None
    dx, dy = res.report["correction"]["shift_px"]
    return round(dx * scale * 3600.0, 4), round(dy * scale * 3600.0, 4)


def acquired(path, kind) -> Optional[str]:
    """The acquisition time when the metadata states it (FITS ``DATE-OBS``/``MJD-OBS``; GeoTIFF
    ``TIFFTAG_DATETIME``, ``ACQUISITION_DATE``...), as ISO 8601; else ``None``."""
    try:
        if kind == "fits":
            from astropy.time import Time

            from rastalign.io.fits import inspect_fits

            h = inspect_fits(path).header
            if h.get("DATE-OBS"):
                return Time(str(h["DATE-OBS"]), format="isot", scale="utc").isot
            if h.get("MJD-OBS") is not None:
                return Time(float(h["MJD-OBS"]), format="mjd", scale="utc").isot
            return None
        from rastalign.io.raster import open_dataset

        with open_dataset(path) as ds:
            tags = {k.upper(): v for k, v in ds.tags().items()}
        for key in ("ACQUISITION_DATE", "ACQUISITIONDATETIME", "DATE_ACQUIRED", "DATETIME", "TIFFTAG_DATETIME"):
            if tags.get(key):
                return _iso(tags[key])
    except Exception:  # noqa: BLE001 - no readable date: input order
        return None
    return None


def _iso(text) -> Optional[str]:
    from datetime import datetime

    text = str(text).strip().replace("Z", "")
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).isoformat()
        except ValueError:
            continue
    return None
