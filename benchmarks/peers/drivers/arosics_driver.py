"""Run AROSICS (global COREG or COREG_LOCAL) on a GeoTIFF pair and write the corrected image.

Runs inside the AROSICS virtualenv:
    python arosics_driver.py {global,local} REFERENCE TARGET OUTPUT [--max-shift PX] [--grid-res PX] [--ws PX]
Global: COREG(...).correct_shifts() with AROSICS' default ``align_grids=False``, i.e. the
output keeps the target's pixels and only its geotransform is shifted (the benchmark
resamples it onto the reference grid with that geotransform). Local: COREG_LOCAL with a
tie-point grid, whose correct_shifts() warps the image.
"""
import argparse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["global", "local"])
    ap.add_argument("reference")
    ap.add_argument("target")
    ap.add_argument("output")
    ap.add_argument("--max-shift", type=int, default=5)
    ap.add_argument("--grid-res", type=int, default=256)
    ap.add_argument("--ws", type=int, default=256)
    a = ap.parse_args()
    if a.mode == "global":
        from arosics import COREG

        cr = COREG(a.reference, a.target, path_out=a.output, fmt_out="GTIFF", ws=(a.ws, a.ws),
                   max_shift=a.max_shift, q=True)
        cr.calculate_spatial_shifts()
        if not cr.success:
            raise SystemExit("arosics: COREG did not find a reliable shift")
        cr.correct_shifts()
    else:
        from arosics import COREG_LOCAL

        cr = COREG_LOCAL(a.reference, a.target, grid_res=a.grid_res, window_size=(a.ws, a.ws),
                         max_shift=a.max_shift, path_out=a.output, fmt_out="GTIFF", q=True, CPUs=2)
        cr.correct_shifts()
        if not getattr(cr, "success", True):
            raise SystemExit("arosics: COREG_LOCAL found no valid tie points")


if __name__ == "__main__":
    main()
