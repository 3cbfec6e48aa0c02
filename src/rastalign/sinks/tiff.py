"""GeoTIFF at the byte level: tiles encoded on the workers, and the file structure written once.

GDAL describes the output: it creates a tiny *sparse* tiled GeoTIFF (no tile data) whose first
directory holds every tag (size, bands, sample format, photometric, compression, predictor,
GeoKeys, geotransform, nodata, metadata, band descriptions). :func:`read_directory` reads
those tags back as raw entries and :func:`write_structure` writes them, with the real tile
index, as the directory of our own file; overview directories (a COG) reuse the pixel tags.

:func:`encode_tiles` stores a tile-aligned block exactly as libtiff would (horizontal
differencing, predictor 2, for integers; floating-point byte planes, predictor 3, for
floats; then zlib-wrapped deflate by libdeflate), so any worker can do it and only compressed bytes travel.
"""
from __future__ import annotations

import struct

import deflate
import numpy as np

LEVEL = 6  # GDAL's default DEFLATE level; libdeflate, as GDAL uses: ~5x zlib's speed, the same stream format
NEW_SUBFILE, WIDTH, LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS = 254, 256, 257, 324, 325
# tags an overview directory shares with the full-resolution one (pixel layout, compression, nodata)
PIXEL_TAGS = {258, 259, 262, 277, 284, 317, 322, 323, 338, 339, 42113}
TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


def predictor_for(dtype) -> int:
    """TIFF predictor: 3 (floating point) for floats, 2 (horizontal) for integers."""
    return 3 if np.dtype(dtype).kind == "f" else 2


def _predict(tile, predictor):
    """The bytes of one tile (rows, cols) after ``predictor``, little-endian: horizontal differences of the
    values (2, wrapping in the integer type, as libtiff's do) or, per row, of the big-endian bytes laid out as
    planes, most significant first (3, floating point)."""
    tile = np.ascontiguousarray(tile)
    if predictor == 2:
        rows = tile.astype(tile.dtype.newbyteorder("<"), copy=False)
    else:
        n, cols = tile.shape
        be = tile.astype(tile.dtype.newbyteorder(">"), copy=False).view(np.uint8).reshape(n, cols, -1)
        rows = np.ascontiguousarray(be.transpose(0, 2, 1)).reshape(n, -1)
    out = rows.copy()
    out[:, 1:] = rows[:, 1:] - rows[:, :-1]
    return out.tobytes()


def encode_tiles(block, tile, fill=0):
    """The compressed tiles of a block ``(bands, rows, cols)`` whose top-left is on the tile grid:
    a list in (tile row, tile col, band) order of ``bytes``. Edge tiles are padded with ``fill``."""
    block = np.asarray(block)
    nb, h, w = block.shape
    pred = predictor_for(block.dtype)
    out = []
    for j in range(0, h, tile):
        for i in range(0, w, tile):
            for b in range(nb):
                t = block[b, j:j + tile, i:i + tile]
                t = np.pad(t, ((0, tile - t.shape[0]), (0, tile - t.shape[1])), constant_values=fill)
                out.append(deflate.zlib_compress(_predict(t, pred), LEVEL))
    return out


def tile_index(box, tile, n_bands, grid_tiles):
    """File tile indexes of the tiles of ``box = (y0, y1, x0, x1)`` (tile-aligned), in the order
    :func:`encode_tiles` returns them; ``grid_tiles = (tile rows, tile cols)`` of the image."""
    nty, ntx = grid_tiles
    j0, i0 = box[0] // tile, box[2] // tile
    h, w = -(-(box[1] - box[0]) // tile), -(-(box[3] - box[2]) // tile)
    return [b * nty * ntx + (j0 + j) * ntx + i0 + i for j in range(h) for i in range(w) for b in range(n_bands)]


def read_directory(path):
    """``(bigtiff, entries)`` of the first directory of a little-endian TIFF: ``{tag: (type, count, raw bytes)}``."""
    with open(path, "rb") as fh:
        head = fh.read(16)
        if head[:2] != b"II":
            raise ValueError("not a little-endian TIFF")
        big = struct.unpack("<H", head[2:4])[0] == 43
        word, count_fmt, esize, inline = ("<Q", "<Q", 20, 8) if big else ("<I", "<H", 12, 4)
        fh.seek(struct.unpack(word, head[8:16] if big else head[4:8])[0])
        n = struct.unpack(count_fmt, fh.read(8 if big else 2))[0]
        raw = fh.read(n * esize)
        entries = {}
        for e in (raw[k * esize:(k + 1) * esize] for k in range(n)):
            tag, typ = struct.unpack("<HH", e[:4])
            count, field = struct.unpack(word, e[4:4 + inline])[0], e[4 + inline:]
            size = TYPE_SIZE.get(typ, 1) * count
            if size <= inline:
                value = field[:size]
            else:
                fh.seek(struct.unpack(word, field)[0])
                value = fh.read(size)
            entries[tag] = (typ, count, value)
    return big, entries


def _long(values, big):
    arr = np.asarray(values, np.uint64)
    return (16, len(arr), arr.astype("<u8").tobytes()) if big else (4, len(arr), arr.astype("<u4").tobytes())


def overview_entries(main, shape, big):
    """Directory entries of an overview of ``shape`` (rows, cols): the pixel tags of ``main``."""
    entries = {t: v for t, v in main.items() if t in PIXEL_TAGS}
    entries[NEW_SUBFILE] = (4, 1, struct.pack("<I", 1))
    entries[WIDTH] = (4, 1, struct.pack("<I", int(shape[1])))
    entries[LENGTH] = (4, 1, struct.pack("<I", int(shape[0])))
    return entries


def directory_bytes(entries, at, next_at, big) -> bytes:
    """A directory placed at file offset ``at`` whose next-directory pointer is ``next_at``."""
    word, esize, inline = ("<Q", 20, 8) if big else ("<I", 12, 4)
    tags = sorted(entries)
    extra_at = at + (8 if big else 2) + len(tags) * esize + inline
    body, extra = struct.pack("<Q" if big else "<H", len(tags)), b""
    for tag in tags:
        typ, count, value = entries[tag]
        if len(value) <= inline:
            field = value.ljust(inline, b"\0")
        else:
            field = struct.pack(word, extra_at + len(extra))
            extra += value + b"\0" * (len(value) % 2)
        body += struct.pack("<HH", tag, typ) + struct.pack(word, count) + field
    return body + struct.pack(word, next_at) + extra


def header_bytes(first_ifd, big) -> bytes:
    return (b"II" + struct.pack("<HHHQ", 43, 8, 0, first_ifd)) if big else (b"II" + struct.pack("<HI", 42, first_ifd))


def with_tiles(entries, offsets, counts, big):
    """``entries`` with the tile index ``offsets`` / ``counts``."""
    out = dict(entries)
    out[TILE_OFFSETS] = _long(offsets, big)
    out[TILE_BYTE_COUNTS] = _long(counts, big)
    return out


def fsync(fh):
    import os

    try:
        os.fsync(fh.fileno())
    except OSError:  # e.g. a file system without fsync: the rename still orders the data
        pass
