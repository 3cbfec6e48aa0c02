"""``rastalign stack``: many scenes or frames onto one reference, in one run.

GeoTIFF scenes take ``vhr-align-image-pair``'s options, FITS frames ``align-fits``' (chosen by
the reference's format); both sets are listed in ``rastalign stack -h``, and an option of the
other kind is refused in one line. Prints the stack summary (JSON) on stdout and one line per
failed scene on stderr; exits 0 when every scene passed, else the failures' status (2 input, 3
alignment or quality, 5 several kinds).
"""
from __future__ import annotations

import argparse
import sys

from rastalign.cli.common import parse_chunks

# options of the pair commands that a stack sets itself (per scene) or has its own of
_PAIR_ONLY = {"moving_image", "fixed_image", "output_image", "overwrite", "scheduler", "n_workers",
              "threads_per_worker", "progress", "temp_dir", "keep_temp_dir", "model_out", "report_out", "plot",
              "log_to_console", "verbose", "help", "version", "chunks", "split_factor",
              "source_fits", "output_filename", "source_cat", "template_fits", "template_cat"}


def add_parser(sub):
    from rastalign.cli.fits import build_parser as fits_parser
    from rastalign.cli.vhr import build_parser as vhr_parser

    p = sub.add_parser("stack", help="align many scenes (GeoTIFF) or frames (FITS) onto one reference",
                       description="Align every MOVING scene onto --reference; write DIR/<name>.aligned.<ext>, "
                                   "its .model.json and DIR/stack_report.{json,csv,png}.",
                       argument_default=None)
    p.add_argument("moving", nargs="*", help="scenes to align: paths or URLs")
    p.add_argument("--reference", required=True, help="the reference (fixed image or FITS template)")
    p.add_argument("--output-dir", required=True, help="folder (or s3:// prefix for Zarr) for the outputs")
    p.add_argument("--from-list", default=None, help="also align the scenes listed in FILE (one path or URL a line)")
    p.add_argument("--skip-existing", action="store_true",
                   help="resume: keep scenes whose image and model exist and verify, redo the others")
    p.add_argument("--overwrite", action="store_true", help="redo every scene, replacing its outputs")
    p.add_argument("--concurrency", type=int, default=None,
                   help="scenes in flight at once (default: the scheduler's threads, at least 2, at most 16)")
    p.add_argument("--no-plot", dest="plot", action="store_false", default=True,
                   help="do not draw stack_report.png (drawn by default when matplotlib is installed)")
    p.add_argument("--chunks", type=parse_chunks, default=None, help="output chunk size ROWS[,COLS] in pixels")
    p.add_argument("--split-factor", type=int, default=None, help="2^k output chunks per scene (GeoTIFF scenes)")
    p.add_argument("--scheduler", default="threads",
                   help="threads | processes | synchronous | distributed | tcp://host:port")
    p.add_argument("--n-workers", type=int, default=None, help="workers of --scheduler distributed (default 2)")
    p.add_argument("--threads-per-worker", type=int, default=None,
                   help="threads per worker of --scheduler distributed (default 1)")
    p.add_argument("--progress", action="store_true", help="progress line on stderr (scenes done, stage, tasks)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging; tracebacks on error")
    for title, build in (("GeoTIFF scenes (vhr-align-image-pair's options)", vhr_parser),
                         ("FITS frames (align-fits' options)", fits_parser)):
        g = p.add_argument_group(title)
        for action in build()._actions:
            if action.dest in _PAIR_ONLY or not action.option_strings or \
                    any(o in p._option_string_actions for o in action.option_strings):
                continue  # shared by both kinds (--correction): listed once
            if action.default not in (None, False, argparse.SUPPRESS) and \
                    "default" not in (action.help or "").lower():
                action.help = f"{action.help or ''} (default: {action.default})"
            action.default = argparse.SUPPRESS  # absent unless given: the kind's own defaults apply
            action.required = False
            g._add_action(action)
    corr = p._option_string_actions["--correction"]
    corr.choices = ("resample", "georef", "wcs")
    corr.help = ("resample onto the output grid (default), or write the correction without resampling: georef "
                 "for GeoTIFF scenes (a corrected geotransform, or GCPs for a residual field), wcs for FITS frames "
                 "(WCS + SIP)")
    return p


def run_stack(args) -> tuple:
    from rastalign.pipelines.stack import align_stack, read_list

    opts = {k: v for k, v in vars(args).items()
            if k not in ("command", "moving", "reference", "output_dir", "from_list", "skip_existing", "overwrite",
                         "concurrency", "plot", "scheduler", "n_workers", "threads_per_worker", "progress",
                         "verbose", "chunks", "split_factor")}
    opts.update((k, getattr(args, k)) for k in ("chunks", "split_factor") if getattr(args, k) is not None)
    scenes = list(args.moving) + (read_list(args.from_list) if args.from_list else [])
    res = align_stack(scenes, args.reference, args.output_dir, overwrite=args.overwrite,
                      skip_existing=args.skip_existing, scheduler=args.scheduler, n_workers=args.n_workers,
                      threads_per_worker=args.threads_per_worker, progress=args.progress,
                      concurrency=args.concurrency, plot=args.plot, **opts)
    for r in res.failed:
        print(f"rastalign stack: error: scene {r['scene']}: {r['error']}", file=sys.stderr)
    return res.summary(), res.exit_code
