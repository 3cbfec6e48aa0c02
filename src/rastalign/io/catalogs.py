"""SExtractor catalogues (ASCII_HEAD, FITS, FITS_LDAC) read as columns. SExtractor's ``X_IMAGE/Y_IMAGE``
are 1-based: :func:`rastalign.tiepoints.detections.as_detections` with ``origin=1`` makes them 0-based pixels
(pixel centres at integers) as it checks the columns."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rastalign.errors import InputError

log = logging.getLogger(__name__)

SEX_X = ("X_IMAGE", "XWIN_IMAGE", "X_IMAGE_DBL")
SEX_Y = ("Y_IMAGE", "YWIN_IMAGE", "Y_IMAGE_DBL")
SEX_FLUX = ("FLUX", "FLUX_AUTO", "FLUX_BEST", "FLUX_ISO", "FLUX_PSF", "FLUX_MODEL", "FLUX_APER", "FLUX_WIN",
            "FLUX_PETRO", "FLUX_MAX")


def _first(colnames, choices):
    upper = {c.upper(): c for c in colnames}
    return next((upper[c] for c in choices if c in upper), None)


def read_sextractor(path):
    """Read a SExtractor catalogue (ASCII_HEAD, or FITS / FITS_LDAC) as a dict of its columns ``x, y``
    (1-based), ``flux`` and, when present, ``fwhm, flag``, unchecked
    (:func:`rastalign.tiepoints.detections.as_detections` with ``origin=1`` makes it a detection table).

    Uses ``X_IMAGE``/``Y_IMAGE`` (else ``XWIN_IMAGE``/``YWIN_IMAGE``) minus 1, the first
    present of ``FLUX, FLUX_AUTO, FLUX_BEST, FLUX_ISO, ...`` (first aperture of a vector
    ``FLUX_APER``), ``FWHM_IMAGE`` and ``FLAGS`` (both optional).
    """
    from astropy.table import Table

    p = Path(path)
    if not p.exists():
        raise InputError(f"catalogue not found: {path}")
    if p.stat().st_size == 0:
        raise InputError(f"catalogue is empty: {path}")
    try:
        with open(p, "rb") as fh:
            is_fits = fh.read(6) == b"SIMPLE"
        if is_fits:
            from astropy.io import fits

            with fits.open(p) as hdul:
                tabs = [h for h in hdul if isinstance(h, fits.BinTableHDU) and h.name != "LDAC_IMHEAD"]
                if not tabs:
                    raise InputError(f"catalogue {path} has no table HDU")
                t = Table(tabs[-1].data)
        else:
            t = Table.read(p, format="ascii.sextractor")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"not a readable SExtractor catalogue: {path} ({str(exc).splitlines()[0][:160]})") from None
    xc, yc, fc = _first(t.colnames, SEX_X), _first(t.colnames, SEX_Y), _first(t.colnames, SEX_FLUX)
    missing = [n for n, c in (("X_IMAGE", xc), ("Y_IMAGE", yc), ("FLUX_* (e.g. FLUX_AUTO)", fc)) if c is None]
    if missing:
        raise InputError(f"catalogue {path} lacks column(s) {', '.join(missing)} "
                         f"(has: {', '.join(t.colnames) or 'none'})")
    flux = np.asarray(t[fc])
    d = {"x": np.asarray(t[xc]), "y": np.asarray(t[yc]), "flux": flux[:, 0] if flux.ndim > 1 else flux}
    for key, col in (("fwhm", _first(t.colnames, ("FWHM_IMAGE",))), ("flag", _first(t.colnames, ("FLAGS",)))):
        if col is not None:
            d[key] = np.asarray(t[col])
    log.info("catalogue %s: %d rows, x/y from %s/%s (1-based), flux from %s", path, len(t), xc, yc, fc)
    return d
