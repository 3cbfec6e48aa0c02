"""What an output carries besides its pixels, said once for every format: the pipelines fill a
:class:`Carried`, and each sink puts its parts in its format's own place (GeoTIFF and Zarr tags, FITS cards),
so no pipeline names a tag or a card."""
from __future__ import annotations

from dataclasses import dataclass, field

MAX_TAG = 30000  # characters of the model's JSON kept in a tag (GDAL's metadata items stay well below 32 KiB)


@dataclass(frozen=True)
class Carried:
    """``model``: the model's JSON text; ``summary``: a few figures of the fit (short upper-case names, e.g.
    ``RANMATCH``); ``descriptions``: band names; ``like``: the raster whose metadata a GeoTIFF copies (tags,
    units, scales, colours); ``header``: a FITS source's header; ``wcs_header``: the WCS cards of the output
    grid (FITS)."""

    model: str | None = None
    summary: dict = field(default_factory=dict)
    descriptions: tuple | list | None = None
    like: str | None = None
    header: object = None
    wcs_header: object = None


def tags(carried: Carried) -> dict:
    """GeoTIFF / Zarr metadata items: the model's JSON (``RASTALIGN_MODEL``) and the summary."""
    out = {} if carried.model is None else {"RASTALIGN_MODEL": carried.model[:MAX_TAG]}
    return {**out, **{k: str(v) for k, v in carried.summary.items()}}


def cards(carried: Carried, grid) -> dict:
    """FITS cards: ``RAMODEL`` (the model itself is the JSON written beside the output), the summary, and for a
    georeferenced grid its geotransform (``GT_A`` .. ``GT_F``, GDAL's order)."""
    out = {} if carried.model is None else {"RAMODEL": "rastalign"}
    if grid is not None and grid.crs is not None:
        out.update({f"GT_{k}": float(v) for k, v in zip("ABCDEF", grid.transform)})
    return {**out, **carried.summary}
