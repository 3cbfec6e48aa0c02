"""The GeoTIFF sink: tiles made on the workers, bytes assembled once (COG: :mod:`rastalign.sinks.cog`).

GDAL describes the file (:func:`_describe`: a sparse GeoTIFF holding every tag, no data);
the tiles are predicted and deflated where the pixels are computed
(:func:`rastalign.sinks.tiff.encode_tiles`), and this process only appends compressed bytes and
writes the directory (:mod:`rastalign.sinks.tiff`): tiles in block order as blocks complete
(bounded batches), the directory at the end.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from rastalign._kernels.pixels import validity
from rastalign.errors import OutputError
from rastalign.io.paths import is_url
from rastalign.io.raster import IncompleteWrite, copy_metadata, gdal_cause, verify_complete, write_failure_reason
from rastalign.runtime.scheduler import active_client
from rastalign.sinks import tiff
from rastalign.sinks.atomic import discard, local_temp, publish
from rastalign.sinks.carried import Carried, tags
from rastalign.sinks.cog import write_cog
from rastalign.sinks.stream import aligned_to, consume, fill_value, tile_size


def _describe(final, arr, grid, nodata, tile, big, carried):
    """The tag entries of the output's first directory, as GDAL writes them (sparse file, then read)."""
    import rasterio
    from affine import Affine

    desc = local_temp(final, ".tif")
    nb, ny, nx = (int(v) for v in arr.shape)
    try:
        with rasterio.open(desc, "w", driver="GTiff", width=nx, height=ny, count=nb, dtype=arr.dtype.name,
                           crs=grid.crs, transform=Affine(*grid.transform[:6]), nodata=nodata, tiled=True,
                           blockxsize=tile, blockysize=tile, compress="deflate", predictor=tiff.predictor_for(arr.dtype),
                           interleave="band", SPARSE_OK="TRUE", BIGTIFF="YES" if big else "NO",
                           ENDIANNESS="LITTLE") as ds:
            if carried.like is not None:
                copy_metadata(carried.like, ds)
            # the grid's AREA_OR_POINT, not the copied raster's: it goes with the georeference (GDAL writes a
            # PixelIsPoint tiepoint half a pixel on)
            ds.update_tags(**tags(carried), AREA_OR_POINT=grid.area_or_point)
        return tiff.read_directory(desc)[1]
    except Exception as exc:  # noqa: BLE001 - GDAL create errors come in several classes
        raise OutputError(f"cannot create output {final}: {gdal_cause(exc)}") from None
    finally:
        discard(desc)


def write_geotiff(arr, path, grid, nodata, fmt="GTiff", carried: Carried = Carried()) -> dict:
    """Write the lazy ``arr`` (bands, rows, cols) as a tiled, deflated GeoTIFF (or COG with overviews)
    on ``grid`` (``shape``, ``transform``, ``crs``), with the metadata of the raster ``carried.like``
    (tags, descriptions, units, scales/offsets, colours) and ``carried``'s tags; atomic and verified."""
    final = str(path) if is_url(path) else Path(path)
    nb, ny, nx = (int(v) for v in arr.shape)
    tile = tile_size((ny, nx))
    big = nb * ny * nx * arr.dtype.itemsize * 4 // 3 > 2 ** 32 - 2 ** 27
    entries = _describe(final, arr, grid, nodata, tile, big, carried)
    if fmt == "COG" and is_url(path) and active_client() is not None:
        # the workers upload the parts: no byte of pixels reaches this process
        return dict(write_cog(arr, None, entries, tile, big, nodata, url=str(path)), format=fmt)
    tmp = local_temp(final, ".tif")
    try:
        if fmt == "COG":
            stats = write_cog(arr, tmp, entries, tile, big, nodata)
        else:
            stats = _write_tiled(arr, tmp, entries, tile, big, nodata)
        verify_complete(tmp, (ny, nx), nb)
        publish(tmp, final)
    except IncompleteWrite as exc:
        raise OutputError(f"cannot write output {path}: {exc}") from None
    except OSError as exc:
        raise OutputError(f"cannot write output {path}: {write_failure_reason(tmp, exc)}") from None
    finally:
        discard(tmp)
    stats["format"] = fmt
    return stats


def _encode(block, box, tile, nodata):
    block = np.asarray(block)
    return tiff.encode_tiles(block, tile, fill_value(block.dtype, nodata)), int(validity(block, nodata).sum())


def _write_tiled(arr, tmp, entries, tile, big, nodata):
    """GTiff: tiles appended in block order as they complete; the directory last."""
    nb, ny, nx = (int(v) for v in arr.shape)
    grid_tiles = (-(-ny // tile), -(-nx // tile))
    n = nb * grid_tiles[0] * grid_tiles[1]
    offsets, counts = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
    n_valid = 0
    with open(tmp, "wb") as fh:
        fh.write(tiff.header_bytes(0, big))

        def put(box, res):
            nonlocal n_valid
            tiles, nv = res
            n_valid += nv
            for idx, data in zip(tiff.tile_index(box, tile, nb, grid_tiles), tiles):
                offsets[idx], counts[idx] = fh.tell(), len(data)
                fh.write(data)

        step = max(tile, (int(arr.chunks[1][0]) // tile) * tile)
        t = consume(aligned_to(arr, step), partial(_encode, tile=tile, nodata=nodata), put)
        at = fh.tell() + fh.tell() % 2
        fh.seek(at)
        fh.write(tiff.directory_bytes(tiff.with_tiles(entries, offsets, counts, big), at, 0, big))
        fh.seek(0)
        fh.write(tiff.header_bytes(at, big))
        tiff.fsync(fh)
    if (counts == 0).any():
        raise OutputError(f"{int((counts == 0).sum())} of {n} tiles were never written")
    return {"warp_write_s": t, "valid_pixels": n_valid}
