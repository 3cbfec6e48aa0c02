"""``vhr-align-image-pair``: coregix's command, same option names and meaning, plus rastalign's.

Band indexes are 0-based (as in coregix). On success one JSON object is printed on
stdout: ``output_image_path``, ``temp_dir``, ``model_path`` and ``quality``.
"""
from __future__ import annotations

import argparse

from rastalign import __version__
from rastalign.cli.common import OneLineParser, parse_chunks, run, setup_logging

PROG = "vhr-align-image-pair"


def _resolutions(text):
    try:
        vals = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals or any(v < 0 for v in vals):
        raise argparse.ArgumentTypeError(f"resolutions must be >= 0 (0 = native), got {text!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Align a moving raster onto a fixed (reference) raster.")
    b = argparse.BooleanOptionalAction
    g = p.add_argument_group("inputs and output")
    g.add_argument("--moving-image", required=True, help="raster to align (every band is warped)")
    g.add_argument("--fixed-image", required=True, help="reference raster")
    g.add_argument("--output-image", required=True, help="aligned output (.tif; .cog.tif or --output-format COG)")
    g.add_argument("--band-index", type=int, default=0, help="0-based band used for estimation in both images")
    g.add_argument("--moving-band-index", type=int, default=None, help="0-based moving band (overrides --band-index)")
    g.add_argument("--fixed-band-index", type=int, default=None, help="0-based fixed band (overrides --band-index)")
    g.add_argument("--moving-nodata", type=float, default=None, help="moving nodata (default: the file's)")
    g.add_argument("--fixed-nodata", type=float, default=None, help="fixed nodata (default: the file's)")
    g.add_argument("--output-nodata", type=float, default=None,
                   help="nodata value written to the output; without it the moving image's is kept, or else the "
                        "reference's, or else 0")
    e = p.add_argument_group("estimation")
    e.add_argument("--use-edge-proxies", action=b, default=True, help="estimate on gradient-magnitude proxies of each image's histogram-equalised "
                        "values (another band, inverted or nonlinear, matches as the same band would)")
    e.add_argument("--min-valid-fraction", type=float, default=0.01,
                   help="minimum fraction of the overlap valid in both images (0 < F <= 1)")
    e.add_argument("--solve-resolutions", "--solve-resolution", type=_resolutions, default=None,
                   help="comma-separated pixel sizes (CRS units) of the estimation levels, coarsest first; 0 "
                        "stands for the moving image's own pixel size, e.g. 10,2.5,0")
    e.add_argument("--clip-fixed-to-moving", action=b, default=True,
                   help="restrict estimation (and a fixed-grid output) to the moving footprint")
    e.add_argument("--enforce-mutual-valid-mask", action=b, default=True,
                   help="estimate from the pixels where both images hold data, nowhere else")
    e.add_argument("--residual-model", choices=("auto", "none", "spline"), default="auto",
                   help="smooth non-rigid field after the affine: auto keeps it only if cross-validation shows "
                        "distortion")
    e.add_argument("--max-rms", type=float, default=1.0, dest="max_rms_px",
                   help="quality check: fail when the inlier residual RMS exceeds this (px)")
    e.add_argument("--min-inliers", type=int, default=6, help="quality check: minimum inlier tie points")
    e.add_argument("--max-error-px", type=float, default=None,
                   help="accuracy check: fail when the predicted model error (95th percentile over the valid "
                        "overlap, moving px; quality.predicted_error_px) exceeds this; the report is still written")
    w = p.add_argument_group("warp and output")
    w.add_argument("--output-on-moving-grid", action=b, default=True,
                   help="write on the moving grid (default) or on the fixed grid cropped to the moving footprint")
    w.add_argument("--like", default=None, help="write on this raster's grid (any CRS)")
    w.add_argument("--output-crs", default=None, help="write in this CRS (e.g. EPSG:3857), covering the moving footprint")
    w.add_argument("--output-resolution", type=float, default=None, help="output pixel size in output CRS units")
    w.add_argument("--resampling", choices=("nearest", "bilinear", "cubic", "lanczos", "bspline"), default="cubic",
                   help="interpolation of the moving image (bspline: prefiltered cubic B-spline, scipy's order 3); "
                        "an output grid 1.5x or more coarser box-averages first")
    w.add_argument("--split-factor", type=int, default=None,
                   help="2^k output chunks (2^ceil(k/2) columns x 2^floor(k/2) rows); default: automatic, about "
                        "64 MB per chunk")
    w.add_argument("--chunks", type=parse_chunks, default=None,
                   help="output chunk size ROWS[,COLS] in pixels (default: --split-factor, else automatic)")
    w.add_argument("--output-format", default=None, metavar="{GTiff,COG,FITS,Zarr}",
                   help="output format, any case (default: from the suffix: .tif GTiff, .cog.tif COG, .fits FITS, "
                        ".zarr Zarr written by the workers)")
    w.add_argument("--correction", choices=("resample", "georef"), default="resample",
                   help="resample the moving image onto the output grid, or georef: keep its pixels byte for byte "
                        "and write the correction as their georeference (a corrected geotransform, or GCPs for a "
                        "residual field; .tif or .vrt)")
    w.add_argument("--trim-edge-invalid", action=b, default=False,
                   help="set output pixels within --edge-trim-depth of invalid pixels to nodata")
    w.add_argument("--edge-trim-depth", type=int, default=8, help="pixels trimmed by --trim-edge-invalid")
    w.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    s = p.add_argument_group("execution and reporting")
    s.add_argument("--scheduler", default="threads",
                   help="threads | processes | synchronous | distributed | tcp://host:port")
    s.add_argument("--n-workers", type=int, default=None, help="workers of --scheduler distributed (default 2)")
    s.add_argument("--threads-per-worker", type=int, default=None,
                   help="threads per worker of --scheduler distributed (default 1)")
    s.add_argument("--progress", action="store_true", help="progress bar on stderr")
    s.add_argument("--temp-dir", default=None, help="parent folder of the working folder")
    s.add_argument("--keep-temp-dir", action="store_true", help="keep the working folder (tie points, report)")
    s.add_argument("--model-out", default=None, help="model JSON path (default: OUTPUT.model.json)")
    s.add_argument("--report-out", default=None, help="full report JSON (quality, tie points, timings)")
    s.add_argument("--plot", default=None, help="PNG of residual vectors and their histogram")
    s.add_argument("--log-to-console", action="store_true", help="log progress to stderr")
    s.add_argument("-v", "--verbose", action="count", default=0, help="more logging; tracebacks on error")
    s.add_argument("--version", action="version", version=f"%(prog)s (rastalign) {__version__}")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.log_to_console)
    opts = {k: v for k, v in vars(args).items() if k not in ("moving_image", "fixed_image", "output_image", "verbose")}

    def go():
        from rastalign.pipelines.pair import align_image_pair

        return align_image_pair(args.moving_image, args.fixed_image, args.output_image, **opts).summary()

    return run(PROG, go, args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
