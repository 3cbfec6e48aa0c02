"""Is the predicted error right about the truth? Synthetic pairs with a known truth, varied on purpose.

For every pair the model is estimated (in this process, as ``rastalign.estimate`` / ``estimate_fits`` do) and
compared with the truth over the valid overlap: the true error's p95 and max beside the predicted ones
(``quality.predicted_error_px``). A pair is calibrated when true p95 / predicted p95 lies in [0.5, 2]; the
prediction is overconfident when that ratio exceeds 1 (never above 3 is the hard limit).

    python benchmarks/calibration.py [--only NAME ...] [--quick]

Cases: VHR pairs of 1024^2 to 4096^2 with radial distortion (0-4 px at the corners) and local bumps,
clouds and nodata (0-40 %), noise, a multimodal pair (the moving image an inverted, nonlinear radiometric
transform), a georeference rotated by 12 deg; star fields of 30 to 20000 stars with distortion. Data is generated
into a temporary folder.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import write_results  # noqa: E402

from rastalign.testing.pairs import Truth  # noqa: E402


@dataclasses.dataclass(frozen=True)
class BumpTruth(Truth):
    """The pull map plus local Gaussian bumps ``(x, y, sigma, dx, dy)`` (fixed px), on top of the radial term."""

    bumps: tuple = ()

    def _bump(self, x, y):
        bx, by = np.zeros_like(np.asarray(x, float)), np.zeros_like(np.asarray(y, float))
        for cx, cy, s, dx, dy in self.bumps:
            g = np.exp(-((np.asarray(x) - cx) ** 2 + (np.asarray(y) - cy) ** 2) / (2.0 * s * s))
            bx, by = bx + dx * g, by + dy * g
        return bx, by

    def __call__(self, px, py, iterations=30):
        qx, qy = super().__call__(px, py, iterations)
        bx, by = self._bump(px, py)
        return qx + bx, qy + by

    def generate(self, qx, qy):
        qx, qy = np.asarray(qx, float), np.asarray(qy, float)
        px, py = super().generate(qx, qy)
        for _ in range(25):  # base(p) + bump(p) = q, by fixed-point iteration (the bumps are gentle)
            bx, by = self._bump(px, py)
            px, py = super().generate(qx - bx, qy - by)
        return px, py


def _blobs(shape, fraction, seed, scale=64):
    """A cloud mask: a smooth random field thresholded to cover ``fraction`` of the image."""
    from scipy import ndimage

    if fraction <= 0:
        return np.zeros(shape, bool)
    rng = np.random.default_rng(seed)
    small = rng.normal(size=(max(2, shape[0] // scale), max(2, shape[1] // scale)))
    field = ndimage.zoom(ndimage.gaussian_filter(small, 1.0), (shape[0] / small.shape[0], shape[1] / small.shape[1]),
                         order=1)[:shape[0], :shape[1]]
    return field > np.quantile(field, 1.0 - fraction)


def write_vhr(folder, n, truth, clouds=0.0, noise=0.005, multimodal=False, seed=0):
    """Moving and fixed GeoTIFFs of ``truth`` (uint16, nodata 0); clouds are nodata in the moving image."""
    import rasterio
    from affine import Affine
    from rastalign.testing.pairs import UTM_CRS, UTM_TRANSFORM, render

    mask = _blobs((n, n), clouds, seed + 17)
    paths = []
    for role in ("moving", "fixed"):
        block = render(truth, (0, n, 0, n), role, seed, "uint16", noise=noise)[0].astype(np.float64)
        if role == "moving" and multimodal:  # another band's look: inverted and bent
            v = (block - block.min()) / max(np.ptp(block), 1.0)
            block = 1000.0 + 40000.0 * (1.0 - v ** 0.6)
        block = np.clip(np.rint(block), 1, 65535).astype(np.uint16)
        if role == "moving":
            block[mask] = 0
        path = Path(folder) / f"{role}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint16", crs=UTM_CRS,
                           transform=Affine(*UTM_TRANSFORM), nodata=0, tiled=True, blockxsize=512,
                           blockysize=512, compress="deflate") as ds:
            ds.write(block[None])
        paths.append(path)
    return paths[0], paths[1], mask


def true_error(model, truth, n, margin, clouds=None):
    """The model's true error (moving px) over the valid overlap: fixed pixels of an ``n`` x ``n`` lattice (every
    ``n / 256`` px, at least 4, ``margin`` px in) whose true moving place is inside the moving image and, with a
    ``clouds`` mask, not clouded there."""
    g = np.arange(margin, n - margin, max(4, n // 256), dtype=float)
    gx, gy = (v.ravel() for v in np.meshgrid(g, g))
    tx, ty = truth(gx, gy)
    inside = (tx >= 0) & (ty >= 0) & (tx <= n - 1) & (ty <= n - 1)
    if clouds is not None:
        inside[inside] &= ~clouds[np.rint(ty[inside]).astype(int), np.rint(tx[inside]).astype(int)]
    mx, my = model(gx[inside], gy[inside])
    return np.hypot(mx - tx[inside], my - ty[inside])


def vhr_case(folder, n, rotation=0.3, shift=(3.4, -2.6), distortion=0.0, bumps=(), clouds=0.0, noise=0.005,
             multimodal=False, seed=0):
    import rastalign

    truth = BumpTruth((n, n), rotation, shift, 1.0, distortion, bumps=tuple(bumps))
    moving, fixed, mask = write_vhr(folder, n, truth, clouds, noise, multimodal, seed)
    t0 = time.perf_counter()
    est = rastalign.estimate(str(moving), str(fixed), seed=seed)
    took = time.perf_counter() - t0
    return true_error(est.model, truth, n, 8, mask), est.quality, took


def rotated_georef_case(folder, n, angle=12.0, distortion=1.0, seed=0):
    """The moving raster's geotransform is rotated by ``angle`` degrees (a north-up fixed raster of the same
    pixel size over the same ground): the CRS relation is not a translation, the model must carry it."""
    import rastalign
    from rastalign.testing.pairs import UTM_TRANSFORM, write_grid_pair

    a = np.deg2rad(angle)
    px = UTM_TRANSFORM[0]
    x0, y0 = UTM_TRANSFORM[2], UTM_TRANSFORM[5]
    # rotate about the scene centre: the moving grid's centre lands on the fixed grid's centre
    cx, cy = x0 + px * n / 2.0, y0 - px * n / 2.0
    lin = np.array([[px * np.cos(a), px * np.sin(a)], [px * np.sin(a), -px * np.cos(a)]])
    off = np.array([cx, cy]) - lin @ np.array([n / 2.0, n / 2.0])
    mt = (lin[0, 0], lin[0, 1], off[0], lin[1, 0], lin[1, 1], off[1])
    truth = Truth((n, n), 0.0, (2.3, -1.7), 1.0, distortion)
    moving, fixed, pull = write_grid_pair(folder, truth, ((n, n), mt, "EPSG:32633"),
                                          ((n, n), UTM_TRANSFORM, "EPSG:32633"), seed=seed, supersample=2)
    t0 = time.perf_counter()
    est = rastalign.estimate(str(moving), str(fixed), seed=seed)
    took = time.perf_counter() - t0
    return true_error(est.model, pull, n, 8), est.quality, took


def star_case(folder, n, n_stars, rotation=1.0, shift=(6.5, -4.25), distortion=0.0, seed=0):
    from rastalign.pipelines.fits_pair import estimate_fits
    from rastalign.testing.stars import write_star_pair

    src, tmpl, field = write_star_pair(folder, (n, n), n_stars, rotation_deg=rotation, shift=shift,
                                       distortion_px=distortion, seed=seed)
    t0 = time.perf_counter()
    model, ev = estimate_fits(str(src), str(tmpl))
    took = time.perf_counter() - t0
    return true_error(model, field.truth, n, 4), ev["stats"], took


BUMPS_1K = ((300.0, 700.0, 90.0, 0.8, -0.5), (760.0, 260.0, 120.0, -0.6, 0.7))


def cases():
    """The named cases: (name, function, keyword arguments)."""
    c = []
    for n, d in ((1024, 0.0), (1024, 1.0), (1024, 2.0), (1024, 4.0), (2048, 0.0), (2048, 2.0), (4096, 2.0),
                 (4096, 4.0)):
        c.append((f"vhr{n}_radial{d:g}", vhr_case, dict(n=n, distortion=d)))
    c.append(("vhr1024_bumps", vhr_case, dict(n=1024, bumps=BUMPS_1K)))
    c.append(("vhr2048_bumps_radial1", vhr_case, dict(n=2048, distortion=1.0,
                                                      bumps=tuple((2 * x, 2 * y, 2 * s, dx, dy)
                                                                  for x, y, s, dx, dy in BUMPS_1K))))
    for f in (0.2, 0.4):
        c.append((f"vhr1024_clouds{int(100 * f)}_radial2", vhr_case, dict(n=1024, distortion=2.0, clouds=f)))
    c.append(("vhr2048_clouds30_bumps", vhr_case, dict(n=2048, clouds=0.3, bumps=BUMPS_1K)))
    c.append(("vhr1024_noisy_radial1", vhr_case, dict(n=1024, distortion=1.0, noise=0.05)))
    c.append(("vhr1024_multimodal_radial2", vhr_case, dict(n=1024, distortion=2.0, multimodal=True)))
    c.append(("vhr1024_rotated5_radial1", vhr_case, dict(n=1024, rotation=5.0, distortion=1.0)))
    c.append(("vhr1024_seed3_radial1", vhr_case, dict(n=1024, distortion=1.0, seed=3)))
    c.append(("vhr1024_rotated_georef12_radial1", rotated_georef_case, dict(n=1024, angle=12.0, distortion=1.0)))
    c.append(("vhr384_small_scene", vhr_case, dict(n=384, rotation=0.08, shift=(1.4, -1.2))))  # 25 tie points
    for n_stars, d in ((30, 0.0), (100, 0.0), (300, 1.0), (600, 2.0), (2000, 2.0), (20000, 2.0)):
        n = 4096 if n_stars >= 20000 else 1024
        c.append((f"stars{n_stars}_{n}_distortion{d:g}", star_case, dict(n=n, n_stars=n_stars, distortion=d)))
    c.append(("stars1000_2048_distortion4", star_case, dict(n=2048, n_stars=1000, distortion=4.0)))
    c.append(("stars200_1024_rotated10", star_case, dict(n=1024, n_stars=200, rotation=10.0, distortion=1.0)))
    return c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run only the cases whose name contains one of these")
    ap.add_argument("--quick", action="store_true", help="skip the 4096^2 cases")
    ap.add_argument("--name", default="calibration", help="results/<name>.json")
    args = ap.parse_args(argv)
    rows = []
    print(f"{'case':34s} {'true p95':>9s} {'pred p95':>9s} {'ratio':>6s} {'true max':>9s} {'pred max':>9s} "
          f"{'s':>5s} {'rel':>5s}")
    for name, fn, kw in cases():
        if args.only and not any(o in name for o in args.only):
            continue
        if args.quick and kw.get("n", 0) >= 4096:
            continue
        with tempfile.TemporaryDirectory(prefix="rastalign_calib_") as d:
            try:
                err, q, took = fn(d, **kw)
            except Exception as exc:  # noqa: BLE001 - a case that cannot align is a row, not the end
                print(f"{name:34s} failed: {exc}")
                rows.append({"case": name, "error": str(exc)})
                continue
        pred = q.get("predicted_error_px") or {}
        tp95, tmax = float(np.percentile(err, 95)), float(err.max())
        ratio = tp95 / pred["p95"] if pred.get("p95") else float("inf")
        rows.append({"case": name, **{k: v for k, v in kw.items() if k != "bumps"}, "bumps": len(kw.get("bumps", ())),
                     "true_p50_px": float(np.median(err)), "true_p95_px": tp95, "true_max_px": tmax,
                     "pred_p50_px": pred.get("p50"), "pred_p95_px": pred.get("p95"), "pred_max_px": pred.get("max"),
                     "ratio_p95": ratio, "estimate_s": took, "mean_reliability": q.get("mean_reliability"),
                     **{k: pred.get(k) for k in ("held_out_rms_px", "in_sample_rms_px", "spread_scale")}})
        print(f"{name:34s} {tp95:9.4f} {pred.get('p95', float('nan')):9.4f} {ratio:6.2f} {tmax:9.4f} "
              f"{pred.get('max', float('nan')):9.4f} {pred.get('spread_scale', float('nan')):5.2f} "
              f"{q.get('mean_reliability', float('nan')):5.3f}", flush=True)
    ok = [r for r in rows if "ratio_p95" in r]
    inside = sum(0.5 <= r["ratio_p95"] <= 2.0 for r in ok)
    worst = max((r["ratio_p95"] for r in ok), default=float("nan"))
    print(f"\n{inside}/{len(ok)} pairs calibrated (true/predicted p95 in [0.5, 2]); worst ratio {worst:.2f}; "
          f"{len(rows) - len(ok)} failed")
    write_results(args.name, rows, calibrated=inside, pairs=len(ok), worst_ratio=worst)


if __name__ == "__main__":
    main()
