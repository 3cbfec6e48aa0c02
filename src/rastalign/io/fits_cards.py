"""FITS header cards: is there a WCS, drop it, move its reference pixel, and the header of an output.

A WCS is handled card by card here (no WCS object is built, so nothing of ``astropy.wcs`` loads): an
output on the template's grid takes the template's WCS cards as they are, with CRPIX moved by the
output grid's offset. Table-lookup distortions (CPDIS/DP, D2IM) point at image extensions of their
own file and never travel to another.
"""
from __future__ import annotations

import logging
import re
import warnings

import numpy as np

log = logging.getLogger(__name__)

STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "BSCALE", "BZERO",
              "BLANK", "CHECKSUM", "DATASUM", "ZIMAGE", "ZBITPIX", "ZCMPTYPE", "THEAP", "TFIELDS", "END"}
_WCS_KEY = re.compile(r"^(WCSAXES|CRPIX|CRVAL|CDELT|CTYPE|CUNIT|CROTA|CD\d_\d|PC\d_\d|PV\d_|PS\d_|LONPOLE|LATPOLE|"
                      r"RADESYS|EQUINOX|EPOCH|WCSNAME|A_|B_|AP_|BP_)")


def shifted_wcs(header_text, pre):
    """The WCS of ``header_text`` (a reference's) seen from an output grid that is the reference's grid
    moved by ``pre``'s translation; ``None`` when unknown or when ``pre`` is not a pure translation."""
    pre = np.asarray(pre)
    if not header_text or not np.allclose(pre[:, :2], np.eye(2)):
        return None
    from astropy.io import fits

    return wcs_of(shifted_header(fits.Header.fromstring(header_text), pre))


def shifted_header(header, pre):
    """A copy of ``header`` whose reference pixels (CRPIX of the primary WCS and of every alternate one, CRPIX1A...)
    are seen from a grid moved by ``pre``'s translation."""
    h = header.copy()
    alternates = {k[6:] for k in h.keys() if re.fullmatch(r"CRPIX[12][A-Z]", k)}
    for a in {""} | alternates:
        h[f"CRPIX1{a}"] = float(h.get(f"CRPIX1{a}", 0.0)) - pre[0, 2]
        h[f"CRPIX2{a}"] = float(h.get(f"CRPIX2{a}", 0.0)) - pre[1, 2]
    return h


def has_wcs(header):
    """Does ``header`` carry WCS cards? (A card test: no WCS is built, nothing of astropy.wcs is loaded.)"""
    return any(k in header for k in ("CTYPE1", "CRPIX1", "CD1_1", "PC1_1", "CDELT1"))


def drop_wcs(header):
    """Remove ``header``'s WCS (and SIP) cards, in place: for a header whose pixels moved to another grid."""
    for key in [k for k in header.keys() if is_wcs_key(k)]:
        del header[key]
    return header


CELESTIAL = ("RA", "DEC", "GLON", "GLAT", "ELON", "ELAT", "SLON", "SLAT", "HPLN", "HPLT")
ANGLE_DEG = {"": 1.0, "DEG": 1.0, "ARCMIN": 1.0 / 60.0, "ARCSEC": 1.0 / 3600.0, "MAS": 1.0 / 3.6e6,
             "RAD": 180.0 / np.pi}


def pixel_scale_deg(header):
    """Mean pixel scale (deg) of a header's celestial axes 1 and 2, from its CD, or PC and CDELT, cards (the
    length of each pixel axis's column, as astropy's ``proj_plane_pixel_scales``; a rotation, CROTA included,
    leaves it unchanged); ``None`` when those axes are not celestial or a card cannot be read."""
    ctypes = [str(header.get(f"CTYPE{i}", "")).upper() for i in (1, 2)]
    if not all(c[:4].rstrip("-") in CELESTIAL or c[1:4] in ("LON", "LAT") for c in ctypes):
        return None
    try:
        unit = np.array([[ANGLE_DEG[str(header.get(f"CUNIT{i}", "")).strip().upper()]] for i in (1, 2)])
        if any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2)):
            m = np.array([[float(header.get(f"CD{i}_{j}", 0.0)) for j in (1, 2)] for i in (1, 2)])
        else:
            pc = np.array([[float(header.get(f"PC{i}_{j}", float(i == j))) for j in (1, 2)] for i in (1, 2)])
            m = pc * np.array([[float(header.get(f"CDELT{i}", 1.0))] for i in (1, 2)])
    except (KeyError, ValueError, TypeError):
        return None
    return float(np.mean(np.sqrt(((m * unit) ** 2).sum(axis=0))))


def wcs_of(header):
    """The celestial/pixel WCS of a header, or ``None`` when it has none."""
    if not has_wcs(header):
        return None
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return WCS(header, naxis=2)
        except Exception:  # noqa: BLE001 - a broken WCS is treated as none
            return None


def output_header(source_header=None, wcs_header=None, extra=None):
    """Source header without structural cards, plus ``extra``. With ``wcs_header`` (the output grid's, e.g. the
    template's), the source's WCS cards give way to its WCS cards, copied as they are; without, the source's
    own stay (the output is on the source's grid: a resampling caller drops them first, :func:`drop_wcs`)."""
    from astropy.io import fits

    hdr = fits.Header()
    for card in (source_header if source_header is not None else fits.Header()).cards:
        k = card.keyword
        if k in STRUCTURAL or k.startswith(("NAXIS", "ZNAXIS", "ZTILE")):
            continue
        if wcs_header is None or not is_wcs_key(k):
            hdr.append(card, end=True)
    # only the celestial WCS comes from the template, not its observation cards (MJD-OBS, DATE-OBS...), nor
    # its table-lookup distortion, whose tables stay in the template's file
    lookups = []
    for card in (wcs_header if wcs_header is not None else fits.Header()).cards:
        if _is_lookup_key(card.keyword):
            lookups.append(card.keyword)
        elif is_wcs_key(card.keyword):
            hdr[card.keyword] = (card.value, card.comment)
    if lookups:
        log.warning("the template's table-lookup distortion (%s) is not copied: its tables are extensions of the "
                    "template's file; the output's WCS is the template's without it", ", ".join(lookups[:3]))
    for k, v in (extra or {}).items():
        hdr[k if len(k) <= 8 else f"HIERARCH {k}"] = v
    return hdr


def is_wcs_key(k):
    """A keyword of the celestial/pixel WCS (with SIP and table-lookup distortions); time references and
    observation cards are not."""
    return bool(_WCS_KEY.match(k)) or _is_lookup_key(k)


def _is_lookup_key(k):
    """A card of a table-lookup distortion (CPDIS/DP, D2IM): it points at image extensions of its own file."""
    return k.startswith(("CPDIS", "CQDIS", "D2IM", "AXISCORR", "NPOLEXT")) or (k[:2] in ("DP", "DQ") and
                                                                               k[2:3].isdigit())
