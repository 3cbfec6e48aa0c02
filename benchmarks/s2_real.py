"""Real Sentinel-2 pair (../shared/data): rastalign's residual vs AROSICS' published global shift.

Both corrections are put on the reference grid and scored the same way: windowed
least-squares matching of the corrected image against the reference in windows
that are valid in both and cloud-free (normalised cross-correlation >= 0.8 after
correction). Prints a table and writes benchmarks/results/s2_real.json.

    python benchmarks/s2_real.py [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
AROSICS_SHIFT_M = (3.58, -15.66)  # published global shift (map units) for this pair


def score(img, valid, ref, rvalid, window=96, min_ncc=0.8):
    from rastalign.testing.pairs import measure_misregistration

    return measure_misregistration(img, ref, valid & rvalid, window=window, min_ncc=min_ncc)


def stats(s):
    m = np.hypot(s[:, 2], s[:, 3])
    return {"n_windows": int(len(m)), "median_px": float(np.median(m)), "p95_px": float(np.percentile(m, 95)),
            "rms_px": float(np.sqrt(np.mean(m ** 2))), "mean_dx": float(s[:, 2].mean()), "mean_dy": float(s[:, 3].mean())}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--set", nargs="*", default=[], metavar="OPTION=VALUE",
                    help="estimation options to try, e.g. window=64 (numbers as numbers)")
    ap.add_argument("--out", default=str(HERE / "results" / "s2_real.json"))
    args = ap.parse_args(argv)
    options = {k: json.loads(v) if v[:1].isdigit() or v[:1] in "-[" else v
               for k, v in (o.split("=", 1) for o in args.set)}
    import rastalign
    from rastalign.geometry.grids import output_grid
    from rastalign.io.raster import inspect_raster, read_window
    from rastalign.model.model import AlignmentModel
    from rastalign.geometry.affine import invert_affine
    from rastalign.geometry.grids import moving_to_fixed
    from rastalign.warp.kernel import warp_array

    mov_p = Path(args.data) / "s2_T33UUU_20160529_B03_moving.tif"
    fix_p = Path(args.data) / "s2_T33UUU_20160608_B03_reference.tif"
    if not mov_p.exists():
        sys.exit(f"data not found: {mov_p}")
    tmp = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    res = rastalign.align_image_pair(str(mov_p), str(fix_p), str(tmp / "out.tif"), output_on_moving_grid=False,
                                    **options)
    wall = time.perf_counter() - t0
    mov, fix = inspect_raster(mov_p), inspect_raster(fix_p)
    grid = output_grid(mov, fix, False, True)
    out, vout = read_window(tmp / "out.tif", (0, grid.shape[0], 0, grid.shape[1]))
    oy, ox = int(round(grid.pre[1, 2])), int(round(grid.pre[0, 2]))
    ref, vref = read_window(fix_p, (oy, oy + grid.shape[0], ox, ox + grid.shape[1]))
    # AROSICS: shift the moving image by the published global shift (x, y in map units)
    base = invert_affine(moving_to_fixed(mov, fix))
    res_m = mov.resolution
    shift_px = np.array([AROSICS_SHIFT_M[0] / res_m, -AROSICS_SHIFT_M[1] / res_m])
    rows = {}
    mdata, mvalid = read_window(mov_p, (0, mov.shape[0], 0, mov.shape[1]))
    # the sign convention of a published shift is easy to get wrong: try all four, keep the best
    candidates = {"uncorrected": (0.0, 0.0)}
    for sx in (1.0, -1.0):
        for sy in (1.0, -1.0):
            candidates[f"arosics_global_shift({sx:+.0f},{sy:+.0f})"] = (sx, sy)
    for name, (sx, sy) in candidates.items():
        aff = base.copy()
        aff[:, 2] -= np.array([sx, sy]) * shift_px
        m = AlignmentModel(aff).with_output_grid(grid.pre, grid.shape)
        vals, v = warp_array(mdata, m, grid.shape, valid=mvalid, resampling="cubic")
        rows[name] = stats(score(vals[0], v, ref[0], vref))
    best = min((k for k in rows if k.startswith("arosics")), key=lambda k: rows[k]["median_px"])
    rows = {"uncorrected": rows["uncorrected"], "arosics_global_shift (best sign)": dict(rows[best], variant=best)}
    rows["rastalign"] = stats(score(out[0], vout, ref[0], vref))
    rows["rastalign"]["wall_s"] = wall
    rows["rastalign"]["quality"] = res.quality
    print(f"{'method':32s} {'windows':>8s} {'median px':>10s} {'p95 px':>8s} {'rms px':>8s} {'mean dx':>8s} {'mean dy':>8s}")
    for k, r in rows.items():
        print(f"{k:32s} {r['n_windows']:8d} {r['median_px']:10.3f} {r['p95_px']:8.3f} {r['rms_px']:8.3f} "
              f"{r['mean_dx']:8.3f} {r['mean_dy']:8.3f}")
    (HERE / "results").mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(rows, options=options), indent=2))
    return rows


if __name__ == "__main__":
    main()
