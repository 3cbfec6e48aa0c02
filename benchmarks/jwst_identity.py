"""How close to the identity do the two JWST NIRCam epochs align, by several independent estimators?

The shared data README says the two epochs lie on one pixel grid, so the true transform is
the identity. This script measures what the pixels say, with estimators that share no code:

- rastalign's star model (``estimate_fits``), as an RMS over the frame of |model - identity|;
- the median offset of sources matched at the identity (sep windowed centroids), by size class;
- a direct least-squares image shift (cubic-spline resampling, gain and offset free), whole frame
  and per quadrant;
- spalipy and astroalign, when importable (``--peers-python`` names an interpreter that has them).

Prints a table and writes ``benchmarks/results/jwst_identity.json``. Not run by the tests.

    python benchmarks/jwst_identity.py [--peers-python /tmp/rastalign-peers-venv/bin/python]
"""
import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
E1, E2 = (DATA / f"jwst_nircam_f200w_a2744_epoch{k}.fits" for k in (1, 2))

PEERS = r"""
import json, sys, numpy as np
from astropy.io import fits
a = np.nan_to_num(fits.getdata(sys.argv[1], "SCI").astype(float))
b = np.nan_to_num(fits.getdata(sys.argv[2], "SCI").astype(float))
g = np.mgrid[0:900:10, 0:900:10].reshape(2, -1).T.astype(float)
out = {}
try:
    from spalipy import Spalipy
    s = Spalipy(b, template_data=a, min_n_match=20, spline_order=0)
    s.align()
    m = s.affine_transform.apply_transform(g)
    out["spalipy (similarity)"] = float(np.sqrt(np.mean(np.sum((m - g) ** 2, 1))))
except Exception as exc:
    out["spalipy (similarity)"] = repr(exc)[:80]
try:
    import astroalign as aa
    t, _ = aa.find_transform(b.astype("float32"), a.astype("float32"))
    m = t(g)
    out["astroalign (similarity)"] = float(np.sqrt(np.mean(np.sum((m - g) ** 2, 1))))
except Exception as exc:
    out["astroalign (similarity)"] = repr(exc)[:80]
print(json.dumps(out))
"""


def image_shift(a, b, box):
    """(dx, dy) minimising sum (a - (g * b(x + d) + o))^2 over ``box`` (cubic-spline shift)."""
    from scipy import ndimage, optimize

    sl = (slice(box[0], box[1]), slice(box[2], box[3]))

    def cost(p):
        sb = ndimage.shift(b, (-p[1], -p[0]), order=3, mode="nearest")
        return float(np.sum((a[sl] - (p[2] * sb[sl] + p[3])) ** 2))

    r = optimize.minimize(cost, [0.0, 0.0, 1.0, 0.0], method="Powell", options={"xtol": 1e-4, "ftol": 1e-10})
    return float(r.x[0]), float(r.x[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers-python", default=None)
    args = ap.parse_args()
    from scipy.spatial import cKDTree

    from rastalign import estimate_fits
    from rastalign.io.fits import read_fits
    from rastalign.tiepoints.detect import detect_array

    rows = {}
    model, ev = estimate_fits(E2, E1, source_ext="SCI", template_ext="SCI", min_n_match=20)
    g = np.arange(0, 900, 10, dtype=float)
    gx, gy = np.meshgrid(g, g)
    mx, my = model(gx, gy)
    rows["rastalign star model (full affine), RMS |model - identity|"] = float(np.sqrt(np.mean((mx - gx) ** 2
                                                                                              + (my - gy) ** 2)))
    a, _, _ = read_fits(E1, "SCI")
    b, _, _ = read_fits(E2, "SCI")
    a, b = np.nan_to_num(a).astype(float), np.nan_to_num(b).astype(float)
    ta, tb = detect_array(a), detect_array(b)
    xa = np.column_stack([ta["x"], ta["y"]])
    xb = np.column_stack([tb["x"], tb["y"]])
    d, i = cKDTree(xb).query(xa, distance_upper_bound=1.0)
    ok = np.isfinite(d)
    dxy = xb[i[ok]] - xa[ok]
    fw = np.asarray(ta["fwhm"])[ok]
    for name, sel in (("compact (fwhm < 3.5 px)", fw < 3.5), ("extended (fwhm >= 3.5 px)", fw >= 3.5),
                      ("all", np.ones(len(fw), bool))):
        med = np.median(dxy[sel], axis=0)
        rows[f"median source offset, {name}, n={int(sel.sum())}: |(dx, dy)|"] = float(np.hypot(*med))
    sx, sy = image_shift(a, b, (20, 880, 20, 880))
    rows["image least-squares shift, whole frame: |(dx, dy)|"] = float(np.hypot(sx, sy))
    quads = [image_shift(a, b, (y0, y0 + 430, x0, x0 + 430)) for y0 in (20, 450) for x0 in (20, 450)]
    rows["image least-squares shift, quadrants: spread of dx (max - min)"] = float(np.ptp([q[0] for q in quads]))
    if args.peers_python:
        run = subprocess.run([args.peers_python, "-c", PEERS, str(E1), str(E2)], capture_output=True, text=True)
        if run.returncode == 0:
            rows.update(json.loads(run.stdout.strip().splitlines()[-1]))
    print("| estimator | px |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |")
    out = ROOT / "benchmarks" / "results" / "jwst_identity.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
