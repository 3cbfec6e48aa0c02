"""Run spalipy's Python API (what its broken ``align-fits`` command would have done).

Runs inside the peers' virtualenv:
    python spalipy_api_driver.py SOURCE TEMPLATE OUTPUT [--min-n-match N] [--n-det F] [--spline-order K]
Defaults are those of ``align-fits`` (n_det 0.25, spline order 3, min_n_match 100).
Writes ``aligned_data`` (template grid, cval 0 outside) as a primary-HDU FITS image.
"""
import argparse

import numpy as np
from astropy.io import fits


def first_image(path):
    with fits.open(path) as hdul:
        for h in hdul:
            if h.data is not None and h.data.ndim == 2:
                return np.asarray(h.data, dtype=np.float64)
    raise SystemExit(f"no 2-D image in {path}")


def main():
    from spalipy import Spalipy

    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("template")
    ap.add_argument("output")
    ap.add_argument("--min-n-match", type=int, default=100)
    ap.add_argument("--n-det", type=float, default=0.25)
    ap.add_argument("--spline-order", type=int, default=3)
    a = ap.parse_args()
    s = Spalipy(first_image(a.source), template_data=first_image(a.template), n_det=a.n_det,
                spline_order=a.spline_order, min_n_match=a.min_n_match, copy=False)
    s.align()
    fits.writeto(a.output, np.asarray(s.aligned_data, np.float32), overwrite=True)


if __name__ == "__main__":
    main()
