"""A stack in one run against a loop of pair commands (and, for FITS frames, astroalign).

VHR: ``--scenes`` synthetic uint16 scenes of ``--size``^2 px (shift, rotation and scale known per
scene), aligned to one reference by ``rastalign stack`` and by a shell loop of
``vhr-align-image-pair``. FITS: ``--frames`` star fields of ``--fsize``^2 px with ``--stars``
stars, aligned to one template by ``rastalign stack``, a shell loop of ``align-fits`` and a Python
loop of ``astroalign.register`` (reading and writing FITS, as the tools do). Each contestant runs
as its own process tree, timed with its peak RSS (psutil polling); accuracy is each model's error
against the truth on a grid of template/fixed pixels (median over scenes of the RMS, and the worst).

    python benchmarks/stack.py [--scenes 24 --size 2048] [--frames 50 --fsize 1024 --stars 800] [--only vhr|fits]

Writes ``benchmarks/results/stack.json`` (``stack_vhr.json`` / ``stack_fits.json`` with ``--only``; machine,
date, commit) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import run_measured, write_results  # noqa: E402

ASTROALIGN_LOOP = r"""
import json, sys
import numpy as np
import astroalign as aa
from astropy.io import fits
template = fits.getdata(sys.argv[1]).astype("float32")
out = {}
for src, dst in zip(sys.argv[3::2], sys.argv[4::2]):
    try:
        data = fits.getdata(src).astype("float32")
        t, _ = aa.find_transform(data, template)
        reg, foot = aa.apply_transform(t, data, template, fill_value=np.nan)
        fits.writeto(dst, reg.astype("float32"), overwrite=True)
        out[src] = np.linalg.inv(t.params).tolist()  # template pixel -> source pixel
    except Exception as exc:
        out[src] = str(exc)
json.dump(out, open(sys.argv[2], "w"))
"""


def truths(n, seed=0):
    rng = np.random.default_rng(seed)
    return [dict(shift=(float(rng.uniform(-12, 12)), float(rng.uniform(-12, 12))),
                 rotation_deg=float(rng.uniform(-0.4, 0.4)), scale=float(1 + rng.uniform(-1e-3, 1e-3)))
            for _ in range(n)]


def grid_error(pull, truth, shape, margin=32, step=32):
    """RMS and max of |pull - truth| (moving px) over a grid of output pixels whose truth lies inside."""
    gx, gy = np.meshgrid(np.arange(margin, shape[1] - margin, step, dtype=float),
                         np.arange(margin, shape[0] - margin, step, dtype=float))
    tx, ty = truth(gx, gy)
    ok = (tx >= 0) & (ty >= 0) & (tx <= shape[1] - 1) & (ty <= shape[0] - 1)
    mx, my = pull(gx, gy)
    e = np.hypot(mx - tx, my - ty)[ok]
    return float(np.sqrt(np.mean(e ** 2))), float(e.max())


def model_errors(model_paths, truths_, shape):
    from rastalign import load_model

    errs = [grid_error(load_model(p), t, shape) if os.path.exists(p) else (np.nan, np.nan)
            for p, t in zip(model_paths, truths_)]
    return errs


def summarise(name, kind, n, rc, wall, peak, errs):
    rms = np.array([e[0] for e in errs], float)
    return {"kind": kind, "contestant": name, "n": n, "returncode": rc, "wall_s": round(wall, 2),
            "per_scene_s": round(wall / n, 3), "peak_rss_mb": round(peak), "n_aligned": int(np.isfinite(rms).sum()),
            "median_rms_err_px": float(np.nanmedian(rms)) if np.isfinite(rms).any() else None,
            "max_err_px": float(np.nanmax([e[1] for e in errs])) if np.isfinite(rms).any() else None}


def bench_vhr(root, n, size):
    from rastalign.testing.pairs import write_stack

    shape = (size, size)
    ts = truths(n, 1)
    ref, moving, tr = write_stack(root / "vhr_in", ts, shape, seed=3)
    pair = "vhr-align-image-pair --moving-image {m} --fixed-image {ref} --output-image {out}"
    return stack_and_loop("vhr", root, ref, moving, tr, shape, ".tif", pair)


def stack_and_loop(kind, root, ref, scenes, tr, shape, suffix, pair):
    """``rastalign stack`` and a shell loop of the pair command ``pair`` (a template of ``m``, ``ref``, ``out``)
    over the same scenes, each a measured process tree; rows with time, memory and model error."""
    out, loop = root / f"{kind}_stack", root / f"{kind}_loop"
    rc, wall, peak, so, se = run_measured(["rastalign", "stack", "--reference", str(ref), "--output-dir", str(out),
                                           "--no-plot", *map(str, scenes)])
    names = [str(out / f"{Path(m).stem}.aligned{suffix}.model.json") for m in scenes]
    rows = [summarise("rastalign stack", kind, len(scenes), rc, wall, peak, model_errors(names, tr, shape))]
    loop.mkdir()
    cmd = pair.format(m="$m", ref=ref, out=f"{loop}/$(basename $m)")
    script = (f"for m in {' '.join(map(str, scenes))}; do {cmd} --model-out {loop}/$(basename $m).model.json "
              f"> /dev/null || exit 1; done")
    rc, wall, peak, so, se = run_measured(["bash", "-c", script])
    names = [str(loop / f"{Path(m).name}.model.json") for m in scenes]
    rows.append(summarise(f"loop of {pair.split()[0]}", kind, len(scenes), rc, wall, peak,
                          model_errors(names, tr, shape)))
    return rows


def bench_fits(root, n, size, stars):
    from rastalign.testing.stars import write_star_stack

    shape = (size, size)
    ts = [dict(shift=t["shift"], rotation_deg=5 * t["rotation_deg"]) for t in truths(n, 2)]
    tmpl, frames, fields = write_star_stack(root / "fits_in", ts, shape, n_stars=stars, seed=4)
    tr = [f.truth for f in fields]
    rows = stack_and_loop("fits", root, tmpl, frames, tr, shape, ".fits", "align-fits {m} {out} -tf {ref}")
    aa_dir = root / "fits_astroalign"
    aa_dir.mkdir()
    pairs = [a for f in frames for a in (str(f), str(aa_dir / Path(f).name))]
    res_json = root / "astroalign.json"
    rc, wall, peak, so, se = run_measured([sys.executable, "-c", ASTROALIGN_LOOP, str(tmpl), str(res_json), *pairs])
    if rc != 0:
        print(se[-2000:], file=sys.stderr)
    got = json.loads(res_json.read_text()) if res_json.exists() else {}
    errs = []
    for f, t in zip(frames, tr):
        m = got.get(str(f))
        if not isinstance(m, list):
            errs.append((np.nan, np.nan))
            continue
        m = np.asarray(m)
        errs.append(grid_error(lambda x, y: (m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]),
                               t, shape))
    rows.append(summarise("astroalign.register loop", "fits", n, rc, wall, peak, errs))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=24)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--fsize", type=int, default=1024)
    ap.add_argument("--stars", type=int, default=800)
    ap.add_argument("--only", choices=("vhr", "fits"), default=None)
    ap.add_argument("--workdir", default=None, help="keep the data here (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="rastalign_stack_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        if args.only in (None, "vhr"):
            rows += bench_vhr(root, args.scenes, args.size)
        if args.only in (None, "fits"):
            rows += bench_fits(root, args.frames, args.fsize, args.stars)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'kind':5s} {'contestant':30s} {'n':>3s} {'wall s':>7s} {'s/scene':>8s} {'peak MB':>8s} {'ok':>3s} "
          f"{'med rms err px':>14s} {'max err px':>10s}")
    for r in rows:
        med = "-" if r["median_rms_err_px"] is None else f"{r['median_rms_err_px']:.4f}"
        mx = "-" if r["max_err_px"] is None else f"{r['max_err_px']:.4f}"
        print(f"{r['kind']:5s} {r['contestant']:30s} {r['n']:3d} {r['wall_s']:7.1f} {r['per_scene_s']:8.2f} "
              f"{r['peak_rss_mb']:8.0f} {r['n_aligned']:3d} {med:>14s} {mx:>10s}")
    for kind in ("vhr", "fits"):
        ours = [r for r in rows if r["kind"] == kind and r["contestant"] == "rastalign stack"]
        for r in rows:
            if ours and r["kind"] == kind and r is not ours[0]:
                print(f"{kind}: rastalign stack is {r['wall_s'] / ours[0]['wall_s']:.2f}x faster than {r['contestant']}")
    write_results("stack" if args.only is None else f"stack_{args.only}", rows, args=vars(args))  # one kind: its own file
    return rows


if __name__ == "__main__":
    main()
