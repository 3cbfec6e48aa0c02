"""The COG sink: the overview pyramid computed on the workers, the file laid out as a COG.

Each ``tile * 2**m`` block makes its own levels ``0..m`` (2x2 mean of the valid pixels, until
the image fits one tile); the few coarser levels come from one task over the level-``m``
pieces. The file is laid out as GDAL lays out a COG: header, GDAL's structural metadata,
every directory, then the tile data from the smallest overview to full resolution, each
level row-major with bands innermost, each tile with its size before it and its last 4 bytes
after it. With a ``distributed`` client the tiles stay on the workers until they are written
in file order; with a local scheduler they are spooled to a temporary file beside the output.
To object storage with a ``distributed`` client, the workers upload the file as the numbered
parts of one multipart upload (:mod:`rastalign.sinks.multipart`), the header in part 1, built
last; the client completes it, and the object appears whole or not at all.
"""
from __future__ import annotations

import struct
import time
from functools import partial
from operator import getitem

import numpy as np

from rastalign._kernels.pixels import validity
from rastalign.errors import OutputError
from rastalign.runtime import progress
from rastalign.runtime.scheduler import active_client
from rastalign.sinks import multipart, tiff
from rastalign.sinks.atomic import discard, temp_path_beside
from rastalign.sinks.stream import aligned_to, consume, fill_value
from rastalign.warp.plan import blocks

# GDAL's COG layout: each tile preceded by its size (uint32) and followed by its last 4 bytes repeated
GHOST = (b"LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
         b"BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ")
MAX_LOCAL_LEVELS = 3  # a pyramid block is tile * 2**3 = 4096 px: its levels 0..3 need no neighbour


def overview_shapes(shape, tile):
    """Overview sizes (rows, cols), each half the previous (rounded up), until one fits a tile."""
    out, (ny, nx) = [], shape
    while max(ny, nx) > tile:
        ny, nx = -(-ny // 2), -(-nx // 2)
        out.append((ny, nx))
    return out


def reduce2(block, nodata):
    """One overview step: the mean of the valid pixels of each 2x2 box (the last row/column of an
    odd size alone), stored in the block's dtype; nodata where none is valid."""
    from rastalign.warp.graph import to_output_dtype

    nb, h, w = block.shape
    valid = validity(block, nodata)
    ftype = np.float64 if block.dtype.itemsize > 4 or block.dtype.kind in "iu" and block.dtype.itemsize == 4 \
        else np.float32
    vals = np.zeros((nb, h + h % 2, w + w % 2), ftype)
    vals[:, :h, :w] = np.where(valid, block, 0)
    cnt = np.zeros((h + h % 2, w + w % 2), ftype)
    cnt[:h, :w] = valid
    s = vals[:, 0::2, 0::2] + vals[:, 1::2, 0::2] + vals[:, 0::2, 1::2] + vals[:, 1::2, 1::2]
    n = cnt[0::2, 0::2] + cnt[1::2, 0::2] + cnt[0::2, 1::2] + cnt[1::2, 1::2]
    return to_output_dtype(s / np.maximum(n, 1), n > 0, block.dtype, nodata)


def _pyramid(block, box, tile, m, nodata):
    """Levels 0..m of one ``tile * 2**m`` block: ``(tiles per level, level-m pixels, valid count)``."""
    cur = np.asarray(block)
    fill = fill_value(cur.dtype, nodata)
    n_valid = int(validity(cur, nodata).sum())
    levels = []
    for k in range(m + 1):
        levels.append(tiff.encode_tiles(cur, tile, fill))
        if k < m:
            cur = reduce2(cur, nodata)
    return levels, cur, n_valid


def _rest(pieces, boxes, shape, tile, n, nodata):
    """The levels coarser than the blocks' own: the level-m mosaic reduced ``n`` more times."""
    mosaic = np.empty((pieces[0].shape[0],) + tuple(shape), pieces[0].dtype)
    for p, (y0, y1, x0, x1) in zip(pieces, boxes):
        mosaic[:, y0:y1, x0:x1] = p
    fill = fill_value(mosaic.dtype, nodata)
    out = []
    for _ in range(n):
        mosaic = reduce2(mosaic, nodata)
        out.append(tiff.encode_tiles(mosaic, tile, fill))
    return out


def _level_box(box, k):
    y0, y1, x0, x1 = box
    return y0 >> k, -((-y1) >> k), x0 >> k, -((-x1) >> k)


def _file_order(blocks, tile, nb, grid_tiles):
    """``(block, position in its tile list, file tile index)`` in file order: tile rows, then
    tile columns, then bands; ``blocks``: ``[(block, box)]`` covering one level."""
    rows = {}
    for b, box in blocks:
        rows.setdefault(box[0], []).append((box[2], b, box))
    for y0 in sorted(rows):
        row = sorted(rows[y0])
        first = {b: tiff.tile_index(box, tile, nb, grid_tiles) for _, b, box in row}
        widths = {b: -(-(box[3] - box[2]) // tile) for _, b, box in row}
        height = -(-(row[0][2][1] - row[0][2][0]) // tile)
        for jj in range(height):
            for _, b, _box in row:
                for ii in range(widths[b]):
                    for band in range(nb):
                        pos = (jj * widths[b] + ii) * nb + band
                        yield b, pos, first[b][pos]


class _Spool:
    """Local schedulers: compressed tiles spooled to a temporary file beside the output."""

    def __init__(self, tmp):
        self.path = temp_path_beside(tmp, ".spool")
        self.fh = open(self.path, "w+b")
        self.where = {}

    def add(self, key, tiles):
        self.fh.seek(0, 2)
        at, lens = self.fh.tell(), [len(t) for t in tiles]
        self.fh.write(b"".join(tiles))
        self.where[key] = (at, lens)

    def sizes(self, key):
        return self.where[key][1]

    def fetch(self, keys):
        out = []
        for key in keys:
            at, lens = self.where[key]
            self.fh.seek(at)
            out.append([self.fh.read(n) for n in lens])
        return out

    def close(self):
        self.fh.close()
        discard(self.path)


class _Held:
    """A ``distributed`` client: tiles stay on the workers (futures) until written in file order."""

    def __init__(self, client):
        self.client, self.futures, self.size = client, {}, {}

    def add(self, key, future):
        self.futures[key] = future

    def load_sizes(self):
        keys = list(self.futures)
        got = self.client.gather([self.client.submit(_lengths, self.futures[k], pure=False) for k in keys])
        self.size = dict(zip(keys, got))

    def sizes(self, key):
        return self.size[key]

    def fetch(self, keys):
        return self.client.gather([self.futures[k] for k in keys])

    def close(self):
        self.futures.clear()


def _lengths(tiles):
    return [len(t) for t in tiles]


def _level_tiles(res, k):
    return res[0][k]


def write_cog(arr, tmp, entries, tile, big, nodata, url=None):
    """COG: the pyramid on the workers, then header, structural metadata, directories and data, written to
    ``tmp``, or with a ``distributed`` client uploaded to ``url`` by the workers (:func:`_upload`)."""
    t0 = time.perf_counter()
    nb, ny, nx = (int(v) for v in arr.shape)
    shapes = [(ny, nx)] + overview_shapes((ny, nx), tile)
    n_ov = len(shapes) - 1
    m = min(n_ov, MAX_LOCAL_LEVELS)
    a = aligned_to(arr, tile << m)
    items = list(blocks(a))
    encode = partial(_pyramid, tile=tile, m=m, nodata=nodata)
    boxes_m = [_level_box(box, m) for _, box in items]
    level_blocks = [[(b, _level_box(box, k)) for b, (_, box) in enumerate(items)] for k in range(m + 1)]
    level_blocks += [[(0, (0, shapes[k][0], 0, shapes[k][1]))] for k in range(m + 1, n_ov + 1)]
    client = active_client()
    store = _Held(client) if client is not None else _Spool(tmp)
    try:
        if client is not None:
            import dask
            from distributed import as_completed

            delayed = a.to_delayed()
            task = dask.delayed(encode, pure=True)
            futs = client.compute([task(delayed[idx], box) for idx, box in items])
            for n, _ in enumerate(as_completed(futs), start=1):
                progress.blocks(n, len(items))
            for b, f in enumerate(futs):
                for k in range(m + 1):
                    store.add((k, b), client.submit(_level_tiles, f, k, pure=False))
            n_valid = sum(client.gather([client.submit(getitem, f, 2, pure=False) for f in futs]))
            if n_ov > m:
                pieces = [client.submit(getitem, f, 1, pure=False) for f in futs]
                rest = client.submit(_rest, pieces, boxes_m, shapes[m], tile, n_ov - m, nodata, pure=False)
                for j in range(n_ov - m):
                    store.add((m + 1 + j, 0), client.submit(getitem, rest, j, pure=False))
            del futs
            store.load_sizes()
        else:
            n_valid, pieces = 0, []

            def put(box, res):  # consume hands the blocks over in row-major order, as ``items`` lists them
                nonlocal n_valid
                for k in range(m + 1):
                    store.add((k, len(pieces)), res[0][k])
                pieces.append(res[1])
                n_valid += res[2]

            consume(a, encode, put)
            if n_ov > m:
                for j, tiles in enumerate(_rest(pieces, boxes_m, shapes[m], tile, n_ov - m, nodata)):
                    store.add((m + 1 + j, 0), tiles)
            del pieces
        if url is not None:
            _upload(url, entries, shapes, level_blocks, store, tile, nb, big)
        else:
            _assemble(tmp, entries, shapes, level_blocks, store, tile, nb, big)
    finally:
        store.close()
    return {"warp_write_s": time.perf_counter() - t0, "valid_pixels": n_valid, "overviews": n_ov}


def _layout(entries, shapes, level_blocks, store, tile, nb, big):
    """The file: ``(head, records, offsets)`` with ``head`` the header, structural metadata and every
    directory, ``records`` the tiles in file order as ``(level, block, position, size)``."""
    grids = [(-(-s[0] // tile), -(-s[1] // tile)) for s in shapes]
    n_tiles = [nb * g[0] * g[1] for g in grids]
    dirs = [entries] + [tiff.overview_entries(entries, s, big) for s in shapes[1:]]
    ghost = b"GDAL_STRUCTURAL_METADATA_SIZE=%06d bytes\n" % len(GHOST) + GHOST
    pos = (16 if big else 8) + len(ghost)
    dir_at = []
    for d, n in zip(dirs, n_tiles):
        dir_at.append(pos)
        pos += len(tiff.directory_bytes(tiff.with_tiles(d, np.zeros(n), np.zeros(n), big), 0, 0, big))
    offsets = [np.zeros(n, np.uint64) for n in n_tiles]
    counts = [np.zeros(n, np.uint64) for n in n_tiles]
    records = []
    for k in range(len(shapes) - 1, -1, -1):
        sizes = {b: store.sizes((k, b)) for b, _ in level_blocks[k]}
        for b, p, idx in _file_order(level_blocks[k], tile, nb, grids[k]):
            offsets[k][idx], counts[k][idx] = pos + 4, sizes[b][p]
            records.append((k, b, p, int(sizes[b][p])))
            pos += sizes[b][p] + 8
    if any((c == 0).any() for c in counts):
        raise OutputError("a COG tile was never computed")
    head = tiff.header_bytes(dir_at[0], big) + ghost
    for k, d in enumerate(dirs):
        nxt = dir_at[k + 1] if k + 1 < len(dirs) else 0
        head += tiff.directory_bytes(tiff.with_tiles(d, offsets[k], counts[k], big), dir_at[k], nxt, big)
    return head, records, pos


def _framed(data):
    """A tile as GDAL's COG lays it out: its size before it, its last 4 bytes after it."""
    return struct.pack("<I", len(data)) + data + data[-4:]


def _assemble(tmp, entries, shapes, level_blocks, store, tile, nb, big):
    """Header, structural metadata, every directory, then the tiles from the smallest overview up,
    one row of blocks in memory at a time."""
    head, records, _ = _layout(entries, shapes, level_blocks, store, tile, nb, big)
    with open(tmp, "wb") as fh:
        fh.write(head)
        i = 0
        while i < len(records):
            k = records[i][0]
            y0 = dict(level_blocks[k])[records[i][1]][0]
            row = [b for b, box in level_blocks[k] if box[0] == y0]  # a row of blocks' tiles are contiguous
            got = dict(zip(row, store.fetch([(k, b) for b in row])))
            n = sum(len(store.sizes((k, b))) for b in row)
            for _, b, p, _ in records[i:i + n]:
                fh.write(_framed(got[b][p]))
            i += n
        tiff.fsync(fh)


def _send_part(url, upload_id, number, head, tile_lists, picks):
    """On a worker: one part of the file (``head`` then the framed tiles ``picks`` of ``tile_lists``)."""
    data = head + b"".join(_framed(tile_lists[j][p]) for j, p in picks)
    return multipart.upload_part(url, upload_id, number, data)


def _upload(url, entries, shapes, level_blocks, store, tile, nb, big):
    """The file as a multipart upload (:func:`rastalign.sinks.multipart.upload`) whose parts the workers build
    from the tiles they hold; the client sends only the header bytes (in part 1's task)."""
    head, records, total = _layout(entries, shapes, level_blocks, store, tile, nb, big)

    def send(upload_id):
        futures = []
        for n, (a, z) in enumerate(multipart.cut([r[3] + 8 for r in records], len(head)), start=1):
            keys = list(dict.fromkeys((k, b) for k, b, _, _ in records[a:z]))
            where = {key: j for j, key in enumerate(keys)}
            picks = [(where[(k, b)], p) for k, b, p, _ in records[a:z]]
            futures.append(store.client.submit(_send_part, url, upload_id, n, head if n == 1 else b"",
                                               [store.futures[key] for key in keys], picks, pure=False))
        return store.client.gather(futures)
    multipart.upload(url, send, total)
