"""Fingerprints of what rastalign produces, to prove that a refactoring changed nothing.

Each image has two fingerprints: ``all`` (pixels, grid and metadata) and ``pixels`` (the decoded
values and masks only), so a change of metadata alone shows as such.

Runs a fixed set of alignments (every output format, both corrections, both stacks, the
accessor and the ``Spalipy`` class) on synthetic data with a known truth and prints one
hash per run over what a user receives: the decoded pixels with their dtype, the grid and
the format's metadata, the model JSON, and the summary / report with timings, paths and
versions removed. Run it before and after a change and compare the JSON files::

    python benchmarks/behaviour.py --out /tmp/before.json
    ... change ...
    python benchmarks/behaviour.py --out /tmp/after.json --compare /tmp/before.json

The data are generated into a temporary folder (about 30 s on 2 cores in all).
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

VOLATILE = {"timings", "timings_s", "elapsed_s", "seconds", "temp_dir", "version", "rastalign_version", "created",
            "date", "host", "machine", "python"}


def _scrub(obj, root):
    """The JSON value without volatile keys, with the run folder replaced by a placeholder."""
    if isinstance(obj, dict):
        return {k: _scrub(v, root) for k, v in sorted(obj.items()) if k not in VOLATILE and "time" not in k and not k.endswith("_s")}
    if isinstance(obj, list):
        return [_scrub(v, root) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(root), "<ROOT>")
    if isinstance(obj, float):
        return float(f"{obj:.12g}")
    return obj


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def image_digest(path) -> str:
    """Pixels, dtype, grid and metadata of an output image, whatever its format."""
    path = Path(path)
    if path.suffix.lower() in (".fits", ".fit", ".fts"):
        from astropy.io import fits

        parts, pixels = [], []
        with fits.open(path) as hdul:
            for hdu in hdul:
                # HISTORY may name the run folder (a random name), wrapped over several cards
                history = re.sub(r"\S*behaviour-\w{8}", "<ROOT>", "".join(hdu.header.get("HISTORY", [])))
                cards = [history] + [str(c) for c in hdu.header.cards if c.keyword not in ("DATE", "HISTORY")]
                data = hdu.data if hdu.data is not None else np.zeros(0)
                parts += [cards, str(np.asarray(data).dtype), np.ascontiguousarray(data).tobytes()]
                pixels += [str(np.asarray(data).dtype), np.ascontiguousarray(data).tobytes()]
        return {"all": _digest(*parts), "pixels": _digest(*pixels)}
    if path.suffix.lower() == ".zarr" or path.is_dir():
        import zarr

        g = zarr.open(str(path), mode="r")
        parts, pixels = [], []
        for name in sorted(g.array_keys()) if hasattr(g, "array_keys") else [None]:
            a = g[name] if name else g
            parts += [name, dict(a.attrs), str(a.dtype), np.ascontiguousarray(a[...]).tobytes()]
            pixels += [name, str(a.dtype), np.ascontiguousarray(a[...]).tobytes()]
        parts.append(dict(g.attrs))
        return {"all": _digest(*parts), "pixels": _digest(*pixels)}
    import rasterio

    with rasterio.open(path) as ds:
        gcps, gcp_crs = ds.gcps
        meta = [ds.profile.get("dtype"), ds.count, ds.shape, tuple(ds.transform), str(ds.crs), ds.nodata,
                ds.tags(), [ds.tags(i + 1) for i in range(ds.count)], ds.descriptions,
                [(g.row, g.col, g.x, g.y) for g in gcps], str(gcp_crs), ds.overviews(1),
                ds.profile.get("tiled"), ds.profile.get("compress")]
        pixels = _digest(ds.profile.get("dtype"), ds.read().tobytes(), ds.read_masks().tobytes())
        return {"all": _digest(meta, ds.read().tobytes(), ds.read_masks().tobytes()), "pixels": pixels}


def json_digest(path, root) -> str:
    return _digest(_scrub(json.loads(Path(path).read_text()), root))


def run_cli(args, root):
    """Run a console script; its stdout JSON (scrubbed) is part of the fingerprint."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    p = subprocess.run(args, capture_output=True, text=True, cwd=root, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed ({p.returncode}): {p.stderr.strip()[-600:]}")
    out = p.stdout.strip()
    try:
        return _scrub(json.loads(out), root)
    except ValueError:
        return out


def fingerprint_runs(root: Path) -> dict:
    from rastalign.testing.pairs import write_pair, write_stack
    from rastalign.testing.stars import write_star_pair, write_star_stack

    vhr = root / "vhr"
    mov, fix, _ = write_pair(vhr, (512, 640), rotation_deg=0.3, shift=(6.4, -3.2), distortion_px=1.0, seed=3)
    aff_m, aff_f, _ = write_pair(root / "aff", (512, 512), shift=(4.25, -2.5), seed=4)
    star = root / "star"
    src, tmpl, _ = write_star_pair(star, (512, 512), n_stars=300, rotation_deg=0.5, shift=(5.3, -4.1),
                                   distortion_px=0.5, seed=5)
    result = {}

    def vhr_run(name, out, *extra, moving=mov, fixed=fix):
        out = root / out
        summary = run_cli(["vhr-align-image-pair", "--moving-image", moving, "--fixed-image", fixed,
                           "--output-image", out, "--model-out", root / f"{name}.model.json",
                           "--report-out", root / f"{name}.report.json", *extra], root)
        result[name] = {"image": image_digest(out), "model": json_digest(root / f"{name}.model.json", root),
                        "report": json_digest(root / f"{name}.report.json", root), "summary": _digest(summary)}

    vhr_run("vhr_gtiff", "o.tif")
    vhr_run("vhr_cog", "o_cog.tif", "--output-format", "COG")
    vhr_run("vhr_zarr", "o.zarr", "--output-format", "Zarr")
    vhr_run("vhr_fits", "o.fits", "--output-format", "FITS")
    vhr_run("vhr_bilinear_fixed_grid", "o_fx.tif", "--resampling", "bilinear", "--no-output-on-moving-grid")
    vhr_run("vhr_georef", "o_geo.tif", "--correction", "georef", moving=aff_m, fixed=aff_f)

    out = root / "applied.tif"
    summary = run_cli(["rastalign", "apply", "--model", root / "vhr_gtiff.model.json", "--moving-image", mov,
                       "--output-image", out], root)
    result["apply"] = {"image": image_digest(out), "summary": _digest(summary)}

    def fits_run(name, cmd, out, *extra):
        out = root / out
        args = [src, out, tmpl] if cmd == "align-fits-simple" else [src, out, "-tf", tmpl]
        summary = run_cli([cmd, *args, *extra], root)
        result[name] = {"image": image_digest(out), "summary": _digest(summary)}

    fits_run("fits_resample", "align-fits", "f.fits", "--model-out", root / "f.model.json", "--spline-order", "3")
    result["fits_resample"]["model"] = json_digest(root / "f.model.json", root)
    fits_run("fits_wcs", "align-fits", "f_wcs.fits", "--correction", "wcs")
    fits_run("fits_simple", "align-fits-simple", "f_simple.fits")

    ref, scenes, _ = write_stack(root / "stack", [dict(shift=(3.5, -1.25)), dict(rotation_deg=0.2, shift=(-2, 4))],
                                 shape=(384, 384), seed=6)
    out_dir = root / "stack_out"
    summary = run_cli(["rastalign", "stack", "--reference", ref, "--output-dir", out_dir, *scenes, "--no-plot"], root)
    result["stack_vhr"] = {"summary": _digest(summary),
                           "images": [image_digest(p) for p in sorted(out_dir.glob("*.tif"))]}
    t, frames, _ = write_star_stack(root / "fstack", [dict(shift=(2.5, 1.5)), dict(rotation_deg=0.3)],
                                    shape=(384, 384), n_stars=250, seed=7)
    out_dir = root / "fstack_out"
    summary = run_cli(["rastalign", "stack", "--reference", t, "--output-dir", out_dir, *frames, "--no-plot"], root)
    result["stack_fits"] = {"summary": _digest(summary),
                            "images": [image_digest(p) for p in sorted(out_dir.glob("*.fits"))]}

    import rioxarray
    import rastalign  # noqa: F401  (registers the accessor)

    moving = rioxarray.open_rasterio(mov, chunks=256)
    reference = rioxarray.open_rasterio(fix, chunks=256)
    aligned = moving.coreg.align(reference)
    model = aligned.attrs.get("rastalign_model") or moving.coreg.estimate(reference).to_json()
    result["accessor"] = {"pixels": _digest(str(aligned.dtype), aligned.shape, aligned.values.tobytes()),
                          "model": _digest(_scrub(json.loads(model) if isinstance(model, str) else model, root))}

    from astropy.io import fits
    from rastalign import Spalipy

    sp = Spalipy(fits.getdata(src).astype("f8"), template_data=fits.getdata(tmpl).astype("f8"), spline_order=3)
    sp.align()
    result["spalipy"] = {"pixels": _digest(sp.aligned_data.tobytes(), sp.aligned_mask.tobytes()),
                         "v": _digest([float(f"{x:.10g}") for x in np.ravel(sp.affine_transform.v)])}
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="write the fingerprints here (JSON)")
    p.add_argument("--compare", type=Path, help="a previous --out to compare against; exit 1 on any difference")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rastalign-behaviour-") as tmp:
        result = fingerprint_runs(Path(tmp))
    text = json.dumps(result, indent=1, sort_keys=True)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    if a.compare:
        before = json.loads(a.compare.read_text())
        diff = [k for k in sorted(set(before) | set(result)) if before.get(k) != result.get(k)]
        print(f"{len(result)} runs, {len(diff)} differ" + (f": {', '.join(diff)}" if diff else ""), file=sys.stderr)
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
