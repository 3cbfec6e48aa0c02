"""Detection tables: astropy Tables, structured arrays and SExtractor catalogues, normalised to one form.

The normal form is a numpy structured array with the columns of spalipy, ``x, y, flux, fwhm,
flag`` (:data:`DETECTION_DTYPE`): ``x`` = column and ``y`` = row in **0-based** pixels (pixel
centres at integers), ``flag`` integer. It indexes like an astropy Table (``t["x"]``, ``t[mask]``)
without loading ``astropy.table`` (a fifth of a second of every FITS command's start); the
spalipy-compatible class hands Tables out (:func:`as_table`). SExtractor's ``X_IMAGE/Y_IMAGE`` are
1-based and are converted here (spalipy does not convert them, which shifts everything by 1 px).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rastalign.errors import InputError

log = logging.getLogger(__name__)

COLUMNS = ("x", "y", "flux", "fwhm", "flag")
DETECTION_DTYPE = np.dtype([("x", float), ("y", float), ("flux", float), ("fwhm", float), ("flag", np.int64)])
SEX_X = ("X_IMAGE", "XWIN_IMAGE", "X_IMAGE_DBL")
SEX_Y = ("Y_IMAGE", "YWIN_IMAGE", "Y_IMAGE_DBL")
SEX_FLUX = ("FLUX", "FLUX_AUTO", "FLUX_BEST", "FLUX_ISO", "FLUX_PSF", "FLUX_MODEL", "FLUX_APER", "FLUX_WIN",
            "FLUX_PETRO", "FLUX_MAX")


def detection_table(x=(), y=(), flux=(), fwhm=(), flag=()):
    """The normal form from its five columns (empty by default); ``ValueError`` unless all are 1-D and as long."""
    cols = [np.asarray(c) for c in (x, y, flux, fwhm, flag)]
    if any(c.shape != (len(cols[0]),) for c in cols):
        raise ValueError(f"shapes {', '.join(str(c.shape) for c in cols)}")
    t = np.empty(len(cols[0]), DETECTION_DTYPE)
    for name, col in zip(COLUMNS, cols):
        t[name] = col
    return t


def as_table(detections):
    """The normal form as an :class:`astropy.table.Table` (what spalipy's attributes hold)."""
    from astropy.table import Table

    return Table(np.asarray(detections))


def _colnames(table):
    if isinstance(table, np.ndarray) and table.dtype.names:
        return list(table.dtype.names)
    names = getattr(table, "colnames", None)  # an astropy Table
    if names is None and callable(getattr(table, "keys", None)):  # a mapping of columns (or a DataFrame)
        names = list(table.keys())
    if names is None:
        raise InputError("not a table: give an astropy Table, a structured array or a dict of columns")
    return list(names)


def as_detections(table, name="detection table"):
    """Normalise a table (astropy Table, structured array, dict of columns) to ``x, y, flux, fwhm, flag``.

    ``x, y, flux`` are required; a missing ``fwhm`` becomes NaN (never filtered by
    ``min_fwhm``) and a missing ``flag`` 0. Rows with non-finite x, y or flux are dropped.
    """
    try:
        names = _colnames(table)
    except InputError as exc:
        raise InputError(f"{name} is {exc}") from None
    cols = {str(c).lower(): c for c in names}
    missing = [c for c in ("x", "y", "flux") if c not in cols]
    if missing:
        raise InputError(f"{name} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, names)) or 'none'}); "
                         f"needed: x, y, flux (fwhm, flag optional)")
    x = _numeric(table, cols["x"], name)
    n = len(x)

    def col(c, default):
        return _numeric(table, cols[c], name) if c in cols else np.full(n, default, float)

    flag = np.asarray(table[cols["flag"]]) if "flag" in cols else np.zeros(n, np.int64)
    if flag.dtype.kind == "f":
        if not np.all(np.isfinite(flag) & (flag == np.round(flag))):
            raise InputError(f"{name}: column flag must hold integers (it is used as bit flags)")
    elif flag.dtype.kind not in "iub":
        raise InputError(f"{name}: column flag must hold integers, not {flag.dtype}")
    try:
        out = detection_table(x, col("y", 0), col("flux", 0), col("fwhm", np.nan), flag.astype(np.int64))
    except ValueError as exc:
        raise InputError(f"{name}: columns of unequal length or shape ({exc})") from None
    ok = np.isfinite(out["x"]) & np.isfinite(out["y"]) & np.isfinite(out["flux"])
    if not ok.all():
        log.info("%s: dropping %d row(s) with non-finite x, y or flux", name, int((~ok).sum()))
        out = out[ok]
    return out


def _first(colnames, choices):
    upper = {c.upper(): c for c in colnames}
    for c in choices:
        if c in upper:
            return upper[c]
    return None


def read_sextractor(path):
    """Read a SExtractor catalogue (ASCII_HEAD, or FITS / FITS_LDAC) into the normal form.

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
    return as_detections(d, name=f"catalogue {path}")


def _numeric(table, column, where):
    """A column as floats, or a one-line :class:`InputError` naming it."""
    try:
        return np.asarray(table[column], dtype=float)
    except (ValueError, TypeError):
        raise InputError(f"{where}: column {column} is not numeric") from None


def write_sextractor(table, path, flux_col="FLUX_AUTO"):
    """Write the normal form as an ASCII_HEAD SExtractor catalogue (1-based positions)."""
    names = ["NUMBER", "X_IMAGE", "Y_IMAGE", flux_col, "FWHM_IMAGE", "FLAGS"]
    units = ["", "pixel", "pixel", "count", "pixel", ""]
    lines = [f"#{i + 1:4d} {n:<22s} {'[' + u + ']' if u else ''}" for i, (n, u) in enumerate(zip(names, units))]
    for k, r in enumerate(table, start=1):
        lines.append(f"{k:6d} {r['x'] + 1:12.5f} {r['y'] + 1:12.5f} {r['flux']:14.5f} {r['fwhm']:9.4f} {int(r['flag']):4d}")
    Path(path).write_text("\n".join(lines) + "\n")
