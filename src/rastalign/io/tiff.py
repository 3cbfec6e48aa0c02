"""GeoTIFF tiles compressed on the workers, assembled once: the byte level of the GeoTIFF sink.

GDAL writes the file's structure (every tag: size, CRS, geotransform, nodata, metadata,
band descriptions, compression and predictor) as a *sparse* tiled file with no tile
data. :func:`encode_tiles` turns a tile-aligned block of pixels into the file's tiles
exactly as libtiff would store them (horizontal differencing, predictor 2, for integers;
floating-point byte planes, predictor 3, for floats; then zlib deflate), so it runs on
any worker and only compressed bytes travel. :class:`TileAssembler` appends the tiles to
the sparse file in a fixed order and finally writes the ``TileOffsets`` /
``TileByteCounts`` arrays at the end of the file and points the directory at them, so the
result does not depend on what GDAL reserved for them.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

LEVEL = 6  # zlib level: GDAL's default for DEFLATE
TILE_OFFSETS, TILE_BYTE_COUNTS = 324, 325


def predictor_for(dtype) -> int:
    """TIFF predictor: 3 (floating point) for floats, 2 (horizontal) for integers."""
    return 3 if np.dtype(dtype).kind == "f" else 2


def _predict(tile, predictor):
    """The bytes of one tile (rows, cols) after ``predictor``, little-endian."""
    tile = np.ascontiguousarray(tile)
    if predictor == 2:
        le = tile.astype(tile.dtype.newbyteorder("<"), copy=False)
        out = le.copy()
        out[:, 1:] = le[:, 1:] - le[:, :-1]  # wraps in the integer type, as libtiff's does
        return out.tobytes()
    # floating point: per row, the big-endian bytes as planes (most significant first), then byte differences
    rows, cols = tile.shape
    size = tile.dtype.itemsize
    be = tile.astype(tile.dtype.newbyteorder(">"), copy=False).view(np.uint8).reshape(rows, cols, size)
    planes = np.ascontiguousarray(be.transpose(0, 2, 1)).reshape(rows, cols * size)
    out = planes.copy()
    out[:, 1:] = planes[:, 1:] - planes[:, :-1]
    return out.tobytes()


def encode_tiles(block, tile, fill=0):
    """The compressed tiles of a block ``(bands, rows, cols)`` whose top-left is on the tile grid:
    a list (band, tile row, tile col order) of ``bytes``. Edge tiles are padded with ``fill``."""
    block = np.asarray(block)
    nb, h, w = block.shape
    pred = predictor_for(block.dtype)
    nty, ntx = -(-h // tile), -(-w // tile)
    out = []
    for b in range(nb):
        for j in range(nty):
            for i in range(ntx):
                t = block[b, j * tile:(j + 1) * tile, i * tile:(i + 1) * tile]
                if t.shape != (tile, tile):
                    pad = np.full((tile, tile), fill, block.dtype)
                    pad[:t.shape[0], :t.shape[1]] = t
                    t = pad
                out.append(zlib.compress(_predict(t, pred), LEVEL))
    return out


class TileAssembler:
    """Appends compressed tiles to a sparse tiled TIFF made by GDAL and fixes its tile index.

    ``add(index, data)`` appends one tile (``index`` in the file's tile order:
    band-major for band-interleaved files); ``finish()`` writes the offset and byte-count
    arrays and patches the first directory's two entries. Every tile must be added.
    """

    def __init__(self, path, n_tiles):
        self.fh = open(path, "r+b")
        self.n = int(n_tiles)
        self.offsets = np.zeros(self.n, np.uint64)
        self.counts = np.zeros(self.n, np.uint64)
        self.fh.seek(0, 2)
        self.end = self.fh.tell()
        head = self._read(0, 16)
        self.bo = "<" if head[:2] == b"II" else ">"
        self.big = struct.unpack(self.bo + "H", head[2:4])[0] == 43

    def _read(self, offset, n):
        self.fh.seek(offset)
        return self.fh.read(n)

    def add(self, index, data):
        self.end += (-self.end) % 2  # word-aligned, as libtiff does
        self.fh.seek(self.end)
        self.fh.write(data)
        self.offsets[index], self.counts[index] = self.end, len(data)
        self.end += len(data)

    def finish(self):
        if (self.counts == 0).any():
            missing = int((self.counts == 0).sum())
            raise ValueError(f"{missing} of {self.n} tiles were never written")
        bo, big = self.bo, self.big
        if not big and self.end > 2 ** 32 - 1:
            raise ValueError("the compressed tiles exceed 4 GB in a classic TIFF")
        ifd = struct.unpack(bo + ("Q" if big else "I"), self._read(8 if big else 4, 8 if big else 4))[0]
        n = struct.unpack(bo + ("Q" if big else "H"), self._read(ifd, 8 if big else 2))[0]
        esize, first = (20, ifd + 8) if big else (12, ifd + 2)
        dt = np.dtype(bo + ("u8" if big else "u4"))
        typ = 16 if big else 4  # LONG8 / LONG
        patched = 0
        for k in range(n):
            at = first + k * esize
            tag = struct.unpack(bo + "H", self._read(at, 2))[0]
            if tag not in (TILE_OFFSETS, TILE_BYTE_COUNTS):
                continue
            values = self.offsets if tag == TILE_OFFSETS else self.counts
            count = struct.unpack(bo + ("Q" if big else "I"), self._read(at + 4, 8 if big else 4))[0]
            if count != self.n:
                raise ValueError(f"the file declares {count} tiles, {self.n} were expected")
            raw = values.astype(dt).tobytes()
            if len(raw) <= (8 if big else 4):
                where = at + (12 if big else 8)
                raw = raw.ljust(8 if big else 4, b"\0")
            else:
                self.end += (-self.end) % 2
                where = self.end
                self.end += len(raw)
            self.fh.seek(where)
            self.fh.write(raw)
            self.fh.seek(at + 2)
            self.fh.write(struct.pack(bo + "H", typ))
            if where != at + (12 if big else 8):
                self.fh.seek(at + (12 if big else 8))
                self.fh.write(struct.pack(bo + ("Q" if big else "I"), where))
            patched += 1
        if patched != 2:
            raise ValueError("the file has no tile index to patch (not a tiled TIFF)")
        self.fh.flush()
        os_fsync(self.fh)

    def close(self):
        self.fh.close()


def os_fsync(fh):
    import os

    try:
        os.fsync(fh.fileno())
    except OSError:  # e.g. a file system without fsync: the rename still orders the data
        pass
