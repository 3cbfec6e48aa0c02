"""End-to-end scaling (estimate + warp + write) against gdalwarp applying the same affine.

For each size a uint16 pair (0.25 deg, (3.37, -2.61) px) is generated with
rastalign.testing.pairs into a temporary folder. rastalign runs ``vhr-align-image-pair
--resampling bilinear`` in a fresh process; gdalwarp (the speed anchor) warps the
same moving image with the affine rastalign estimated (through a VRT whose
geotransform encodes it) with ``-multi -wo NUM_THREADS=2 -r bilinear`` to a tiled,
deflate-compressed GeoTIFF. Wall time and peak RSS of each whole process tree.

Estimation is set beside one plain read of both inputs: a fresh process reads each input
whole with rasterio (one thread, as GDAL reads by default), timed after its imports; the
ratio ``estimate_over_read`` is rastalign's estimation time in the command's fresh process (from its report)
over that read, and ``warm_over_read`` the same for the estimation alone in this (warm) process, median of 3
after one run.

    python benchmarks/scale.py [--sizes 2048 4096 8192 16384] [--extra ...]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import run_measured, warm_estimate, write_results  # noqa: E402


def affine_vrt(moving, model, out_vrt):
    """A VRT of ``moving`` whose geotransform makes gdalwarp onto the moving grid apply ``model``'s affine."""
    import rasterio
    from affine import Affine

    with rasterio.open(moving) as ds:
        g = ds.transform
    lin = model.linear  # output centre px -> moving centre px
    L = Affine(lin[0, 0], lin[0, 1], lin[0, 2], lin[1, 0], lin[1, 1], lin[1, 2])
    # corner-based: moving corner = L(output corner - 0.5) + 0.5
    Lc = Affine.translation(0.5, 0.5) * L * Affine.translation(-0.5, -0.5)
    new = g * ~Lc  # world = G_out(output corner) and moving corner = Lc(output corner)
    subprocess.run(["gdal_translate", "-q", "-of", "VRT", str(moving), str(out_vrt)], check=True)
    text = Path(out_vrt).read_text()
    gt = ", ".join(repr(v) for v in (new.c, new.a, new.b, new.f, new.d, new.e))
    text = re.sub(r"<GeoTransform>.*?</GeoTransform>", f"<GeoTransform>{gt}</GeoTransform>", text, flags=re.S)
    Path(out_vrt).write_text(text)


READ_BOTH = """
import json, sys, time
import rasterio
t = time.perf_counter()
for p in sys.argv[1:]:
    with rasterio.open(p) as ds:
        ds.read(1)
print(json.dumps({"read_s": time.perf_counter() - t}))
"""


def plain_read_s(*paths):
    """Seconds to read ``paths`` whole, one after the other, in a fresh process (after its imports)."""
    out = subprocess.run([sys.executable, "-c", READ_BOTH, *map(str, paths)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)["read_s"]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    ap.add_argument("--repeat", type=int, default=1, help="runs per size (the table adds their medians)")
    ap.add_argument("--workdir", default=None, help="keep the pairs in WORKDIR/s<size> (not deleted)")
    ap.add_argument("--reuse", action="store_true", help="use the pair already in WORKDIR/s<size> when there is one")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[])
    args = ap.parse_args(argv)
    from rastalign.io.raster import inspect_raster
    from rastalign import load_model
    from rastalign.testing.pairs import Truth, write_pair

    have_gdal = shutil.which("gdalwarp") is not None
    rows = []
    for n in [n for n in args.sizes for _ in range(args.repeat)]:
        root = Path(args.workdir or tempfile.mkdtemp(prefix="rastalign_scale_"))
        d = root / f"s{n}"
        d.mkdir(parents=True, exist_ok=True)
        case = dict(rotation_deg=0.25, shift=(3.37, -2.61))
        moving, fixed = d / "moving.tif", d / "fixed.tif"
        if args.reuse and moving.exists() and fixed.exists():
            truth = Truth((n, n), **case)
        else:
            moving, fixed, truth = write_pair(d, (n, n), seed=2, **case)
        out = d / "out.tif"
        cmd = ["vhr-align-image-pair", "--moving-image", str(moving), "--fixed-image", str(fixed),
               "--output-image", str(out), "--overwrite", "--resampling", "bilinear",
               "--model-out", str(d / "model.json"), "--report-out", str(d / "report.json")] + args.extra
        code, wall, peak, so, se = run_measured(cmd)
        row = {"size": n, "mpx": n * n / 1e6, "ok": code == 0, "wall_s": round(wall, 2),
               "s_per_mpx": round(wall / (n * n / 1e6), 4), "peak_rss_mb": round(peak, 1)}
        if code == 0:
            rep = json.loads((d / "report.json").read_text())
            row["estimate_s"] = round(rep["timings_s"]["estimate_s"], 2)
            row["warp_write_s"] = round(rep["timings_s"]["warp_write_s"], 2)
            row["read_both_s"] = round(plain_read_s(moving, fixed), 2)
            row["estimate_over_read"] = round(row["estimate_s"] / row["read_both_s"], 3)
            row["estimate_warm_s"] = round(warm_estimate(moving, fixed, repeats=3), 3)
            row["warm_over_read"] = round(row["estimate_warm_s"] / row["read_both_s"], 3)
            model = load_model(d / "model.json")
            err = np.hypot(*[np.asarray(v) for v in np.subtract(model(*np.meshgrid(np.arange(0, n, n // 16),
                                                                                    np.arange(0, n, n // 16))),
                                                                  truth(*np.meshgrid(np.arange(0, n, n // 16),
                                                                                     np.arange(0, n, n // 16))))])
            row["model_err_max_px"] = float(err.max())
            if have_gdal:
                affine_vrt(moving, model, d / "m.vrt")
                info = inspect_raster(moving)
                a, b, c, dd, e, f = info.transform
                te = [c, f + e * n, c + a * n, f]
                gcmd = ["gdalwarp", "-q", "-overwrite", "-multi", "-wo", "NUM_THREADS=2", "-r", "bilinear",
                        "-te", *map(str, te), "-tr", str(a), str(-e), "-co", "TILED=YES", "-co", "COMPRESS=DEFLATE",
                        "-co", "PREDICTOR=2", "-co", "BIGTIFF=IF_SAFER", str(d / "m.vrt"), str(d / "gdal.tif")]
                gcode, gwall, gpeak, _, gse = run_measured(gcmd)
                row.update({"gdalwarp_ok": gcode == 0, "gdalwarp_wall_s": round(gwall, 2),
                            "gdalwarp_peak_rss_mb": round(gpeak, 1), "ratio_to_gdalwarp": round(wall / gwall, 3)})
        else:
            row["error"] = (se.strip().splitlines() or [f"exit {code}"])[-1]
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
        else:
            for p in d.iterdir():
                if p.name not in ("moving.tif", "fixed.tif"):
                    p.unlink()
    nan = float("nan")
    print(f"{'size':>6s} {'Mpx':>7s} {'wall s':>7s} {'s/Mpx':>7s} {'peak MB':>8s} {'est s':>6s} {'read s':>6s} "
          f"{'est/read':>8s} {'warm/read':>9s} {'warp s':>7s} {'gdalwarp s':>10s} {'ratio':>6s}")
    for r in rows:
        print(f"{r['size']:6d} {r['mpx']:7.1f} {r['wall_s']:7.1f} {r['s_per_mpx']:7.3f} {r['peak_rss_mb']:8.0f} "
              f"{r.get('estimate_s', nan):6.1f} {r.get('read_both_s', nan):6.1f} {r.get('estimate_over_read', nan):8.2f} "
              f"{r.get('warm_over_read', nan):9.2f} "
              f"{r.get('warp_write_s', nan):7.1f} {r.get('gdalwarp_wall_s', nan):10.1f} "
              f"{r.get('ratio_to_gdalwarp', nan):6.2f}")
    if args.repeat > 1:
        keys = ("wall_s", "estimate_s", "read_both_s", "estimate_over_read", "estimate_warm_s", "warm_over_read",
                "warp_write_s", "gdalwarp_wall_s", "ratio_to_gdalwarp")
        medians = [{"size": n, "median_of": args.repeat,
                    **{k: round(float(np.median([r[k] for r in rows if r["size"] == n and k in r])), 3)
                       for k in keys if any(k in r for r in rows if r["size"] == n)}} for n in args.sizes]
        for m in medians:
            print("median", json.dumps(m))
        rows = rows + medians
    write_results("scale", rows, sizes=args.sizes, extra=args.extra, repeat=args.repeat)
    return rows


if __name__ == "__main__":
    main()
