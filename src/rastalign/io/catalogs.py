"""SExtractor catalogues (ASCII_HEAD, FITS, FITS_LDAC) read as columns. SExtractor's ``X_IMAGE/Y_IMAGE``
are 1-based and are converted here to 0-based pixels (pixel centres at integers)."""
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
    for c in choices:
        if c in upper:
            return upper[c]
    return None


def read_sextractor(path):
    """Read a SExtractor catalogue (ASCII_HEAD, or FITS / FITS_LDAC) as a dict of 0-based columns ``x, y,
    flux`` and, when present, ``fwhm, flag`` (:func:`rastalign.tiepoints.detections.as_detections` makes it
    a detection table).

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
    where = f"catalogue {path}"
    flux = _numeric(t, fc, where)
    if flux.ndim > 1:
        flux = flux[:, 0]
    d = {"x": _numeric(t, xc, where) - 1.0, "y": _numeric(t, yc, where) - 1.0, "flux": flux}
    fw = _first(t.colnames, ("FWHM_IMAGE",))
    if fw is not None:
        d["fwhm"] = _numeric(t, fw, where)
    fl = _first(t.colnames, ("FLAGS",))
    if fl is not None:
        d["flag"] = _numeric(t, fl, where).astype(np.int64)
    log.info("catalogue %s: %d rows, x/y from %s/%s (1-based -> 0-based), flux from %s", path, len(t), xc, yc, fc)
    return d


def _numeric(table, column, where):
    """A column as floats, or a one-line :class:`InputError` naming it."""
    try:
        return np.asarray(table[column], dtype=float)
    except (ValueError, TypeError):
        raise InputError(f"{where}: column {column} is not numeric") from None
