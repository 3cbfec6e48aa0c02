"""``align-fits`` and ``align-fits-simple``: spalipy's commands, same names, fixed.

Fixes over spalipy 3.5.5: the parser builds (spalipy registers ``--patience-quad-cand``
twice, so its ``align-fits`` always crashes) and ``--quad-edge-buffer`` exists;
SExtractor positions are converted to 0-based; any ``FLUX_*`` column works; the output
keeps the source header and carries the template WCS; ``--min-sep`` defaults to
``2 * max-match-dist`` as in the Python API; errors are one line, exit 2 (input) or 3
(alignment / quality), and a JSON summary is printed on stdout.
"""
from __future__ import annotations

import argparse
import logging
import sys

from rastalign import __version__
from rastalign.params import STAR_DEFAULTS as D
from rastalign.cli.common import OneLineParser, parse_chunks, run, setup_logging

PROG = "align-fits"


def _shape(text):
    try:
        a, b = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWS,COLS (two integers); got {text!r}") from None
    if a < 1 or b < 1:
        raise argparse.ArgumentTypeError(f"output shape must be positive; got {text!r}")
    return a, b


def _n_det(text):
    """An integer count, or a fraction in (0, 1] when written with a decimal point (``1.0`` = all)."""
    try:
        v = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a fraction in (0, 1]; got {text!r}") from None
    if isinstance(v, float) and not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"a fraction must be in (0, 1]; got {text!r}")
    if isinstance(v, int) and v < 1:
        raise argparse.ArgumentTypeError(f"a count must be >= 1; got {text!r}")
    return v


def _ext(text):
    return int(text) if text.strip().lstrip("-").isdigit() else text


def _common(p):
    p.add_argument("--source-ext", type=_ext, default=None,
                   help="HDU of the source image: index or EXTNAME (default: first HDU with image data)")
    p.add_argument("--template-ext", type=_ext, default=None, help="HDU of the template image (index or EXTNAME)")
    p.add_argument("--min-n-match", type=int, default=D.min_n_match,
                   help="minimum number of matched detections (default: auto, half the smaller detection list, "
                        "at least 8 and at most 100; spalipy's meaning when given)")
    p.add_argument("--sep-thresh", type=float, default=D.sep_thresh, help="sep.extract threshold, in background RMS")
    p.add_argument("--max-error-px", type=float, default=None,
                   help="accuracy check: fail when the predicted model error (95th percentile over the overlap, "
                        "source px; quality.predicted_error_px) exceeds this")
    p.add_argument("--preserve-footprints", action="store_true",
                   help="pad the template grid so that the whole source footprint is kept")
    p.add_argument("--correction", choices=("resample", "wcs"), default="resample",
                   help="resample the source onto the template grid, or wcs: keep the source's pixels and cards "
                        "and write a WCS (with SIP distortion) that maps them onto the template's sky")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--model-out", default=None, help="also write the fitted model (JSON)")
    p.add_argument("--scheduler", default="threads",
                   help="dask scheduler: threads, processes, synchronous, distributed (a LocalCluster) or "
                        "tcp://HOST:PORT (an existing cluster)")
    p.add_argument("--n-workers", type=int, default=None, help="workers of --scheduler distributed (default 2)")
    p.add_argument("--threads-per-worker", type=int, default=None,
                   help="threads per worker of --scheduler distributed (default 1)")
    p.add_argument("--chunks", type=parse_chunks, default=None, help="output chunk size ROWS[,COLS] in pixels "
                   "(default: automatic, about 64 MB per chunk)")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr")
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v INFO, -vv DEBUG (and tracebacks)")
    p.add_argument("--version", action="version", version=f"%(prog)s (rastalign) {__version__}")


def build_parser():
    p = OneLineParser(prog=PROG,
                      description="Align a FITS image onto a template by its stars (spalipy's align-fits).")
    p.add_argument("source_fits", help="the FITS frame to align (its pixels are resampled, or its WCS corrected)")
    p.add_argument("output_filename", help="where to write the aligned source (FITS, template grid)")
    p.add_argument("-sc", "--source-cat", default=None, help="source SExtractor catalogue (else sep detects)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("-tf", "--template-fits", default=None, help="template FITS image (sep detects)")
    g.add_argument("-tc", "--template-cat", default=None, help="template SExtractor catalogue")
    p.add_argument("--output-shape", type=_shape, default=None,
                   help="output shape ROWS,COLS (numpy order; spalipy's help wrongly says x,y); "
                        "ignored with --preserve-footprints; default: the template's shape")
    p.add_argument("--n-det", type=_n_det, default=1.0,
                   help="keep the N brightest detections (integer), or a fraction in (0, 1] (e.g. 0.25)")
    p.add_argument("--n-quad-det", type=int, default=D.n_quad_det, help="brightest detections per sub-tile used for quads")
    p.add_argument("--min-quad-sep", type=float, default=D.min_quad_sep, help="minimum separation (px) within a quad")
    p.add_argument("--max-match-dist", type=float, default=D.max_match_dist, help="maximum match distance (px)")
    p.add_argument("--sub-tile", type=int, default=D.sub_tile, help="build quads in N x N sub-tiles")
    p.add_argument("--max-quad-cand", type=int, default=D.max_quad_cand, help="maximum quad candidates verified")
    p.add_argument("--patience-quad-cand", type=int, default=D.patience_quad_cand,
                   help="stop after this many candidates without improvement")
    p.add_argument("--quad-edge-buffer", type=float, default=D.quad_edge_buffer,
                   help="ignore detections closer than this (px) to the edge when building quads")
    p.add_argument("--max-quad-hash-dist", type=float, default=D.max_quad_hash_dist, help="maximum quad hash distance")
    p.add_argument("--spline-order", type=int, default=D.spline_order,
                   help="0: affine only; > 0: add the cross-validated cubic spline residual field")
    p.add_argument("--interp-order", type=int, default=D.interp_order, choices=range(6), metavar="{0..5}",
                   help="0 nearest, 1 bilinear, 2-5 prefiltered cubic B-spline (scipy's order 3)")
    p.add_argument("--min-fwhm", type=float, default=D.min_fwhm, help="drop detections with fwhm below this")
    p.add_argument("--bad-flag-bits", type=int, default=D.bad_flag_bits, help="drop detections with flag & bits != 0")
    p.add_argument("--min-sep", type=float, default=None,
                   help="drop both members of pairs closer than this (px); default 2 * max-match-dist")
    p.add_argument("--cval", type=float, default=D.cval, help="fill value where no source pixel exists")
    p.add_argument("--cval-mask", type=int, default=D.cval_mask,
                   help="value of the MASK extension where no source pixel exists (with --write-mask)")
    p.add_argument("--write-mask", action="store_true", help="add a MASK extension (1 = no valid source)")
    p.add_argument("--source-mask-ext", type=_ext, default=None,
                   help="HDU of the source file holding a mask (non-zero = bad); implies --write-mask")
    _common(p)
    return p


def build_simple_parser():
    p = OneLineParser(prog="align-fits-simple",
                      description="Align a FITS image onto a template with an affine transform (spalipy's simple mode).")
    p.add_argument("source_fits", help="the FITS frame to align (its pixels are resampled, or its WCS corrected)")
    p.add_argument("output_filename", help="where to write the aligned source")
    p.add_argument("template_fits", help="template FITS image")
    _common(p)
    return p


# the positional arguments, by the names of :func:`rastalign.pipelines.fits_pair.align_fits`
POSITIONAL = {"source_fits": "source_path", "output_filename": "output_path", "template_fits": "template_path"}
SIMPLE_MODE = dict(n_det=0.9, sub_tile=1, patience_quad_cand=1, spline_order=0)  # spalipy's simple mode


def _align(prog, args, **fixed):
    """Every parsed argument (but ``-v``) is an option of ``align_fits``, under its own name; the summary
    goes to stdout, the fit statistics to the log."""
    from rastalign.pipelines.fits_pair import align_fits
    from rastalign.tiepoints.stars import log_stats

    setup_logging(args.verbose)
    options = {POSITIONAL.get(k, k): v for k, v in vars(args).items() if k != "verbose"}

    def go():
        summary = align_fits(**options, **fixed).summary()
        log_stats(summary["stats"], logging.getLogger("rastalign.tiepoints.stars"))
        return summary
    return run(prog, go, args.verbose)


def main(argv=None):
    return _align(PROG, build_parser().parse_args(argv))


def main_simple(argv=None):
    """spalipy's simple mode: sep on both images, n_det=0.9, affine only (spline_order=0)."""
    return _align("align-fits-simple", build_simple_parser().parse_args(argv), **SIMPLE_MODE)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
