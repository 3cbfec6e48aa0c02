"""``rastalign``: the umbrella command. ``rastalign demo [DIR]`` makes a synthetic pair with a
known misregistration, aligns it with the real pipeline, scores the result against the
truth and prints the JSON summary; ``rastalign apply`` reuses a saved model; ``rastalign stack``
aligns many scenes onto one reference (:mod:`rastalign.cli.stack`)."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rastalign import __version__
from rastalign.cli.common import OneLineParser, parse_chunks, run, setup_logging

PROG = "rastalign"
DEMO_TRUTH = dict(shape=(1536, 1536), rotation_deg=0.35, shift=(12.3, -7.6), distortion_px=2.0)


def demo(folder=None, overwrite=True, progress=False):
    """Run the demo in ``folder`` (kept), or in a temporary folder removed afterwards; returns the summary."""
    import numpy as np

    from rastalign.io.raster import read_window
    from rastalign.pipelines.pair import align_image_pair
    from rastalign.testing.pairs import measure_misregistration, model_error, summarize, write_pair

    if folder is None:  # nothing is left behind: the files go with the temporary folder
        with tempfile.TemporaryDirectory(prefix="rastalign_demo_") as tmp:
            summary = demo(tmp, overwrite, progress)
        summary["demo"].update(folder=None, files=None, kept=False)
        summary.update(output_image_path=None, model_path=None)  # removed with the folder: named nowhere
        return summary
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    moving, fixed, truth = write_pair(folder, bands=3, seed=7, **DEMO_TRUTH)
    out = folder / "aligned.tif"
    res = align_image_pair(str(moving), str(fixed), str(out), overwrite=overwrite, progress=progress,
                           report_out=str(folder / "report.json"), model_out=str(folder / "model.json"))
    err = model_error(res.model, truth, res.model.output_shape, step=16)
    shape = truth.shape
    a, va = read_window(out, (0, shape[0], 0, shape[1]), bands=[1])
    f, vf = read_window(fixed, (0, shape[0], 0, shape[1]), bands=[1])
    shifts = measure_misregistration(a[0], f[0], va & vf, window=128)
    summary = res.summary()
    # the truth in the summary's own terms: how far the correction moves the content at the grid's centre
    cx, cy = (shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0
    tx, ty = truth(np.array([cx]), np.array([cy]))
    summary["demo"] = {
        "folder": str(folder), "kept": True,
        "truth": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in DEMO_TRUTH.items()},
                  "correction_shift_px": [round(float(cx - tx[0]), 4), round(float(cy - ty[0]), 4)]},
        "model_error_vs_truth_px": {"median": float(np.median(err)), "p95": float(np.percentile(err, 95)),
                                    "max": float(err.max())},
        "residual_misregistration_px": summarize(shifts),
        "wall_s": round(time.perf_counter() - t0, 2),
        "files": {"moving": str(moving), "fixed": str(fixed), "aligned": str(out),
                  "model": str(folder / "model.json"), "report": str(folder / "report.json")},
    }
    return summary


def apply_model(args):
    from rastalign.pipelines.apply import apply_saved

    names = ("resampling", "split_factor", "chunks", "output_format", "overwrite", "scheduler", "n_workers",
             "threads_per_worker", "progress", "correction", "moving_nodata", "output_nodata")
    stats = apply_saved(args.model, args.moving_image, args.output_image, args.like,
                        **{k: getattr(args, k) for k in names})
    return {"output_image_path": args.output_image, **stats}


def build_parser():
    p = OneLineParser(prog=PROG, description="rastalign: raster alignment for scenes of any size.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="align a synthetic pair with a known misregistration and score it")
    d.add_argument("folder", nargs="?", default=None, help="where to write the pair and outputs (default: a temp folder)")
    d.add_argument("--progress", action="store_true", help="progress line on stderr")
    d.add_argument("-v", "--verbose", action="count", default=0, help="more logging; tracebacks on error")
    a = sub.add_parser("apply", help="apply a saved model (JSON) to a moving image")
    a.add_argument("--model", required=True, help="model JSON (--model-out of vhr-align-image-pair)")
    a.add_argument("--moving-image", required=True, help="raster to warp (every band), path")
    a.add_argument("--output-image", required=True, help="output path (.tif, .cog.tif, .fits or .zarr)")
    a.add_argument("--like", default=None, help="raster whose grid the model's output grid is (e.g. the fixed image)")
    a.add_argument("--resampling", choices=("nearest", "bilinear", "cubic", "lanczos", "bspline"), default="cubic",
                   help="interpolation of the moving image")
    a.add_argument("--split-factor", type=int, default=None,
                   help="2^k output chunks (default: automatic, about 64 MB per chunk)")
    a.add_argument("--chunks", type=parse_chunks, default=None, help="output chunk size ROWS[,COLS] in pixels")
    a.add_argument("--output-format", default=None, metavar="{GTiff,COG,FITS,Zarr}",
                   help="output format, any case (default: from the output suffix)")
    a.add_argument("--correction", choices=("resample", "georef"), default="resample",
                   help="resample, or georef: the moving pixels byte for byte with the model as their georeference "
                        "(geotransform, or GCPs for a residual field; .tif or .vrt)")
    a.add_argument("--moving-nodata", type=float, default=None, help="moving nodata (default: the file's)")
    a.add_argument("--output-nodata", type=float, default=None, help="output nodata (default: the moving image's, else 0)")
    a.add_argument("--scheduler", default="threads",
                   help="threads | processes | synchronous | distributed | tcp://host:port (default: threads)")
    a.add_argument("--n-workers", type=int, default=None, help="workers of --scheduler distributed (default 2)")
    a.add_argument("--threads-per-worker", type=int, default=None, help="threads per worker (default 1)")
    a.add_argument("--progress", action="store_true", help="progress bar on stderr")
    a.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    a.add_argument("-v", "--verbose", action="count", default=0, help="more logging; tracebacks on error")
    from rastalign.cli.stack import add_parser as add_stack

    add_stack(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "demo":
        def go():
            s = demo(args.folder, progress=args.progress)
            if s["demo"]["kept"]:
                print(f"demo outputs in {s['demo']['folder']} (aligned.tif, model.json, report.json)", file=sys.stderr)
            else:
                print("demo files removed; run 'rastalign demo DIR' to keep them in DIR", file=sys.stderr)
            return s
        return run(PROG, go, args.verbose)
    if args.command == "stack":
        from rastalign.cli.stack import run_stack

        status = {}

        def go_stack():
            summary, status["exit"] = run_stack(args)
            return summary
        kept = "the scenes finished before it are complete (--skip-existing resumes from them); no other output"
        return run(f"{PROG} stack", go_stack, args.verbose, kept) or status.get("exit", 0)
    return run(f"{PROG} apply", lambda: apply_model(args), args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
