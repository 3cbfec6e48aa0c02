"""Benchmark: align a large synthetic star field (default 8192^2, 8000 stars) with align-fits.

Writes the pair as FITS (tile by tile), then runs the full CLI pipeline in a child
process and reports wall time and peak RSS (the child's, via resource.getrusage), and
the recovered-mapping error against the truth. Prints a table and writes JSON into
benchmarks/results/. Not run by the tests.

    python benchmarks/fits_large.py [--size 8192] [--stars 8000] [--keep]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--stars", type=int, default=8000)
    ap.add_argument("--distortion", type=float, default=2.0)
    ap.add_argument("--folder", default=None)
    args = ap.parse_args()
    from rastalign import load_model
    from rastalign.testing.stars import write_star_pair

    folder = Path(args.folder or tempfile.mkdtemp(prefix="rastalign-bench-"))
    shape = (args.size, args.size)
    t0 = time.perf_counter()
    src, tmpl, field = write_star_pair(folder, shape, args.stars, rotation_deg=2.0, shift=(12.3, -7.7),
                                       scale=1.01, distortion_px=args.distortion, seed=1)
    t_gen = time.perf_counter() - t0
    out = folder / "aligned.fits"
    model_path = folder / "model.json"
    cmd = [sys.executable, "-m", "rastalign.cli.fits", str(src), str(out), "-tf", str(tmpl), "--overwrite",
           "--model-out", str(model_path)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    if proc.returncode != 0:
        sys.exit(f"align-fits failed: {proc.stderr}")
    summary = json.loads(proc.stdout)
    model = load_model(model_path)
    g = np.arange(0, args.size, 64, dtype=float)
    gx, gy = np.meshgrid(g, g)
    tx, ty = field.truth(gx, gy)
    inside = (tx >= 16) & (tx <= args.size - 17) & (ty >= 16) & (ty <= args.size - 17)
    mx, my = model(gx, gy)
    err = np.hypot(mx - tx, my - ty)[inside]
    res = {"size": args.size, "stars": args.stars, "distortion_px": args.distortion, "generate_s": round(t_gen, 1),
           "wall_s": round(wall, 2), "peak_rss_mb": round(peak_mb, 1), "n_matched": summary["quality"]["n_tie_points"],
           "rms_residual_px": summary["quality"]["rms_residual_px"], "mapping_rms_err_px": float(np.sqrt(np.mean(err ** 2))),
           "mapping_max_err_px": float(err.max()), "timings_s": summary["timings_s"], "cpus": os.cpu_count(),
           "spalipy_reference": {"wall_s": 49, "peak_rss_gb": 8}}
    print(f"{'size':>6} {'stars':>6} {'wall s':>7} {'peak MB':>8} {'matched':>8} {'map rms px':>11} {'map max px':>11}")
    print(f"{args.size:>6} {args.stars:>6} {wall:7.2f} {peak_mb:8.1f} {res['n_matched']:>8} "
          f"{res['mapping_rms_err_px']:11.4f} {res['mapping_max_err_px']:11.4f}")
    print(f"estimate {summary['timings_s']['estimate']} s, warp+write {summary['timings_s']['warp_write']} s")
    dest = Path(__file__).resolve().parent / "results"
    dest.mkdir(exist_ok=True)
    (dest / f"fits_large_{args.size}.json").write_text(json.dumps(res, indent=2))
    for p in (src, tmpl, out, model_path):
        p.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
