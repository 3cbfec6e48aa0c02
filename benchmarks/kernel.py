"""In-memory resampling throughput and coordinate accuracy: rastalign's kernel vs GDAL's warper and OpenCV.

Same source (float32), same affine (0.7 deg rotation, sub-pixel shift), same
interpolation, same number of threads. GDAL runs through ``rasterio.warp.reproject``
(its default approximate transformer, error threshold 0.125 px) and again with the
exact transformer (``error_threshold=0``). OpenCV (``opencv-python-headless``, optional:
skipped when absent) is the bandwidth reference, not an accuracy peer: ``warpAffine``
(``WARP_INVERSE_MAP``, ``cv2.setNumThreads``), and ``remap`` on float32 maps of the exact
coordinates (the maps are built outside the timing); both quantise the sample position to
1/32 px, which their coordinate error shows. Coordinate accuracy: the source is the
ramp ``value = x`` (float64); bilinear and Keys' cubic reproduce linear functions exactly,
so each output pixel holds the x coordinate it was sampled at, compared with the exact
model coordinate (each tool with the method of its row).
The prefiltered cubic B-spline (``bspline``) has no GDAL counterpart (GDAL's
``cubicspline`` smooths, it does not interpolate): its peer is
``scipy.ndimage.map_coordinates(order=3, mode="mirror")`` (single-threaded, timed on
precomputed coordinates), and its coordinate error is measured on the ramp with
``bspline`` itself (the spline reproduces linear functions too), 16 px or more from the
frame edges (the mirror boundary bends the ramp's spline within ~8 px, as in scipy).

    python benchmarks/kernel.py [--size 4096] [--threads 2] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def gdal_transforms(a):
    """Pixel-corner transforms (src, dst) so GDAL samples source centre A(x) for output centre x."""
    from affine import Affine

    A = Affine(a[0, 0], a[0, 1], a[0, 2], a[1, 0], a[1, 1], a[1, 2])
    # source corner coords of output world w: A(w - 0.5) + 0.5
    src_inv = Affine.translation(0.5, 0.5) * A * Affine.translation(-0.5, -0.5)
    return ~src_inv, Affine.identity()


def opencv(threads):
    """``cv2`` set to ``threads`` threads, or None when OpenCV is not installed."""
    try:
        import cv2
    except ImportError:
        print("opencv-python-headless not installed: no OpenCV reference rows")
        return None
    cv2.setNumThreads(threads)
    return cv2


def run_tool(name, src, method, model, a, maps, threads, gdal_geo, accuracy=False):
    """One warp of ``src`` (rows, cols) by tool ``name``: ``(values (rows, cols), valid mask)``; with
    ``accuracy``, pixels GDAL or OpenCV could not sample are NaN (timed runs: no nodata handling)."""
    nodata = np.nan if accuracy else 0.0
    n = src.shape[0]
    if name == "rastalign":
        from rastalign.warp.kernel import warp_array

        vals, ok = warp_array(src[None], model, (n, n), resampling=method, threads=threads)
        return vals[0], ok
    if name.startswith("opencv"):
        import cv2

        interp = cv2.INTER_LINEAR if method == "bilinear" else cv2.INTER_CUBIC
        if name == "opencv_affine":
            out = cv2.warpAffine(src, a, (n, n), flags=interp | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=nodata)
        else:
            out = cv2.remap(src, maps[0], maps[1], interp, borderMode=cv2.BORDER_CONSTANT, borderValue=nodata)
        return out, np.ones(out.shape, bool)
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    src_t, dst_t, crs = gdal_geo
    dst = np.full((n, n), nodata, src.dtype)
    nd = {"src_nodata": -1e9, "dst_nodata": np.nan} if accuracy else {}
    reproject(src, dst, src_transform=src_t, src_crs=crs, dst_transform=dst_t, dst_crs=crs,
              resampling=getattr(Resampling, method), num_threads=threads,
              error_threshold=0.125 if name == "gdal" else 0.0, warp_mem_limit=512, **nd)
    return dst, np.ones(dst.shape, bool)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    import rasterio

    from rastalign.model import AlignmentModel
    from rastalign.warp.kernel import warp_array

    n = args.size
    th = np.deg2rad(0.7)
    c = (n - 1) / 2
    r = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    a = np.column_stack([r, np.array([c + 3.37, c - 2.61]) - r @ np.array([c, c])])
    model = AlignmentModel(a, output_shape=(n, n))
    rng = np.random.default_rng(0)
    src = rng.random((n, n), dtype=np.float32) * 1000
    ramp = np.broadcast_to(np.arange(n, dtype=np.float64), (n, n)).copy()
    src_t, dst_t = gdal_transforms(a)
    crs = rasterio.crs.CRS.from_epsg(32633)
    rows = []
    gy, gx = np.mgrid[0:n:61, 0:n:61]
    exact_x = a[0, 0] * gx + a[0, 1] * gy + a[0, 2]
    exact_y = a[1, 0] * gx + a[1, 1] * gy + a[1, 2]
    # compare away from the source edges, where GDAL renormalises partial supports
    interior = (exact_x > 3) & (exact_y > 3) & (exact_x < n - 4) & (exact_y < n - 4)
    cv2 = opencv(args.threads)
    maps = None
    if cv2 is not None:  # remap's maps: the exact coordinates, built once, outside the timing
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
        maps = ((a[0, 0] * xx + a[0, 1] * yy + a[0, 2]).astype(np.float32),
                (a[1, 0] * xx + a[1, 1] * yy + a[1, 2]).astype(np.float32))
        del yy, xx
    for method in ("bilinear", "cubic"):
        tools = ("rastalign", "gdal", "gdal_exact") + (("opencv_affine", "opencv_remap") if cv2 is not None else ())
        res = {name: [] for name in tools}
        for i in range(args.repeat + 1):  # interleaved, so a busy moment of the machine hits every tool alike
            for name in tools:
                t = time.perf_counter()
                run_tool(name, src, method, model, a, maps, args.threads, (src_t, dst_t, crs))
                if i:  # the first round warms up (GDAL's drivers, page faults)
                    res[name].append(time.perf_counter() - t)
        # coordinate accuracy on the ramp (bilinear and Keys' cubic reproduce it exactly)
        acc = {}
        for name in tools:
            vals, ok = run_tool(name, ramp, method, model, a, maps, args.threads, (src_t, dst_t, crs), True)
            sel = vals[gy, gx]
            good = ok[gy, gx] & np.isfinite(sel) & interior
            acc[name] = float(np.max(np.abs(sel - exact_x)[good]))
        mpx = n * n / 1e6
        base = float(np.median(res["rastalign"]))
        for name, ts in res.items():
            med = float(np.median(ts))
            rows.append({"method": method, "tool": name, "median_s": med, "mpx_per_s": mpx / med,
                         "coord_err_max_px": acc[name], "speedup_of_rastalign": med / base})
    # prefiltered cubic B-spline: rastalign vs scipy (no GDAL equivalent)
    from scipy import ndimage

    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    coords = np.stack([a[1, 0] * xx + a[1, 1] * yy + a[1, 2], a[0, 0] * xx + a[0, 1] * yy + a[0, 2]])
    del yy, xx
    res = {"rastalign": [], "scipy": []}
    for _ in range(args.repeat):
        t = time.perf_counter()
        warp_array(src[None], model, (n, n), resampling="bspline", threads=args.threads)
        res["rastalign"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ndimage.map_coordinates(src, coords, order=3, mode="mirror", output=np.float32)
        res["scipy"].append(time.perf_counter() - t)
    inner16 = (exact_x > 16) & (exact_y > 16) & (exact_x < n - 17) & (exact_y < n - 17)
    vals, ok = warp_array(ramp[None], model, (n, n), resampling="bspline", threads=args.threads)
    sp = ndimage.map_coordinates(ramp, coords[:, gy, gx], order=3, mode="mirror")
    acc = {"rastalign": float(np.max(np.abs(vals[0][gy, gx] - exact_x)[ok[gy, gx] & inner16])),
           "scipy": float(np.max(np.abs(sp - exact_x)[inner16]))}
    base = float(np.median(res["rastalign"]))
    for name, ts in res.items():
        med = float(np.median(ts))
        rows.append({"method": "bspline", "tool": name, "median_s": med, "mpx_per_s": n * n / 1e6 / med,
                     "coord_err_max_px": acc[name], "speedup_of_rastalign": med / base})
    print(f"{n}x{n} float32, {args.threads} threads, median of {args.repeat}")
    print(f"{'method':9s} {'tool':13s} {'median s':>9s} {'Mpx/s':>8s} {'rastalign x':>12s} {'coord err px':>13s}")
    for r_ in rows:
        print(f"{r_['method']:9s} {r_['tool']:13s} {r_['median_s']:9.3f} {r_['mpx_per_s']:8.1f} "
              f"{r_['speedup_of_rastalign']:12.2f} {r_['coord_err_max_px']:13.5f}")
    for method in ("bilinear", "cubic"):
        by = {r_["tool"]: r_ for r_ in rows if r_["method"] == method}
        line = (f"{method}: rastalign {by['rastalign']['mpx_per_s']:.0f} Mpx/s = "
                f"{by['gdal_exact']['speedup_of_rastalign']:.2f}x GDAL's exact transformer")
        if "opencv_affine" in by:
            line += f", {by['opencv_affine']['speedup_of_rastalign']:.0%} of OpenCV warpAffine's speed"
        print(line)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "kernel.json").write_text(json.dumps({"size": n, "threads": args.threads,
                                                              "repeat": args.repeat, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
