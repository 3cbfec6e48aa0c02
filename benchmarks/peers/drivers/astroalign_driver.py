"""Run astroalign.register on two FITS images and write the result (template grid) as FITS.

Runs inside the peers' virtualenv:  python astroalign_driver.py SOURCE TEMPLATE OUTPUT
Pixels outside the registered footprint are written as NaN.
"""
import sys

import numpy as np
from astropy.io import fits


def first_image(path):
    with fits.open(path) as hdul:
        for h in hdul:
            if h.data is not None and h.data.ndim == 2:
                return np.asarray(h.data, dtype=np.float32)  # native byte order for sep/skimage
    raise SystemExit(f"no 2-D image in {path}")


def main(argv):
    import astroalign

    src, tmpl, out = argv
    registered, footprint = astroalign.register(first_image(src), first_image(tmpl))
    registered = np.asarray(registered, dtype=np.float32)
    registered[np.asarray(footprint, bool)] = np.nan
    fits.writeto(out, registered, overwrite=True)


if __name__ == "__main__":
    main(sys.argv[1:])
