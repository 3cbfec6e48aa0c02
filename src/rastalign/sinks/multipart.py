"""Multipart uploads to object storage, the parts built and sent by the workers (or read from a local file).

An object written this way appears at its key only when :func:`complete` runs, after every
part is in; a failed run calls :func:`abort` and leaves nothing behind. Parts are numbered
in file order, so the first part (the header, built last by the client once every tile's
size is known) may be sent after all the others. Every part but the last must hold at least
:data:`MIN_PART` bytes (S3's rule). Every call is bounded by ``RASTALIGN_STORE_TIMEOUT``
(:func:`rastalign.io.paths.filesystem`); :func:`failure` aborts a failed upload and words it.
"""
from __future__ import annotations

import os

from rastalign.errors import OutputError
from rastalign.io.paths import filesystem, is_store_timeout, store_cause, store_timeout

MIN_PART = 5 * 2 ** 20
PART_BYTES = 16 * 2 ** 20  # the size parts are cut to
ABORT_WAIT = 10.0  # at most this long (or a third of the store timeout) for the store to confirm an abort


def _where(url):
    fs, path = filesystem(url)
    bucket, key, _ = fs.split_path(path)
    return fs, bucket, key


def create(url) -> str:
    fs, bucket, key = _where(url)
    return fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]


def upload_part(url, upload_id, number, data) -> dict:
    """Send part ``number`` (1-based) of the upload; returns what :func:`complete` needs of it."""
    fs, bucket, key = _where(url)
    out = fs.call_s3("upload_part", Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=int(number),
                     Body=bytes(data))
    return {"PartNumber": int(number), "ETag": out["ETag"]}


def complete(url, upload_id, parts) -> int:
    """Publish the object from its ``parts``; returns its size as the store reports it."""
    fs, bucket, key = _where(url)
    parts = sorted(parts, key=lambda p: p["PartNumber"])
    fs.call_s3("complete_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id,
               MultipartUpload={"Parts": parts})
    fs.invalidate_cache()
    return int(fs.call_s3("head_object", Bucket=bucket, Key=key)["ContentLength"])


def abort(url, upload_id) -> bool:
    """Abort the upload (its parts are dropped, nothing appears at its key); ``True`` once the store
    confirmed it. A store that does not answer is given only a short wait (a third of the store timeout,
    at most :data:`ABORT_WAIT`): the request is sent, and a store that comes back acts on it."""
    try:
        fs, bucket, key = _where(url)
        wait = max(1.0, min(ABORT_WAIT, store_timeout() / 3))
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id, timeout=wait)
        return True
    except Exception:  # noqa: BLE001 - best effort: the store expires abandoned uploads anyway
        return False


def failure(url, upload_id, exc, completing=False) -> OutputError:
    """Abort the upload ``upload_id`` after ``exc`` and return the one-line error that says what happened:
    the cause (``the object store timed out after N s`` for a store that stopped answering), the abort, and
    what is at ``url``: nothing, unless the completion itself went unanswered (the store may then still
    publish the object)."""
    if isinstance(exc, OutputError):  # already one line
        if upload_id is not None:
            abort(url, upload_id)
        return exc
    cause = store_cause(exc)
    if upload_id is None:
        return OutputError(f"cannot write output {url}: {cause}; nothing was written at {url}")
    aborted = "the multipart upload was aborted" if abort(url, upload_id) else \
        "the multipart upload was aborted (not confirmed by the store)"
    if completing and is_store_timeout(exc):
        return OutputError(f"cannot write output {url}: {cause}; the upload's completion went unanswered, so the store "
                           f"may still publish it: check {url} ({aborted})")
    return OutputError(f"cannot write output {url}: {cause}; {aborted}, nothing was written at {url}")


def upload(url, send, size) -> int:
    """One multipart upload to ``url`` of ``size`` bytes whose parts ``send(upload_id)`` sends and returns:
    completed once every part is in, aborted on any failure (:func:`failure`), and an object of another
    size removed and refused. Returns its size."""
    upload_id, completing = None, False
    try:
        upload_id = create(url)
        parts = send(upload_id)
        completing = True
        got = complete(url, upload_id, parts)
    except Exception as exc:  # noqa: BLE001 - botocore/aiohttp/distributed raise many kinds
        raise failure(url, upload_id, exc, completing) from None
    except BaseException:  # interrupted: no object, and the parts dropped
        if upload_id is not None:
            abort(url, upload_id)
        raise
    if got != size:
        fs, key = filesystem(url)
        fs.rm_file(key)
        raise OutputError(f"cannot write output {url}: the object holds {got} bytes, {size} were sent")
    return got


def upload_file(path, url) -> int:
    """Upload the local file ``path`` to ``url`` as one multipart upload (:func:`upload`) of parts of
    :data:`PART_BYTES`; returns its size."""
    size = os.path.getsize(path)

    def send(upload_id):
        with open(path, "rb") as fh:
            return [upload_part(url, upload_id, number, fh.read(stop - start))
                    for number, (start, stop) in enumerate(byte_ranges(size), start=1)]
    return upload(url, send, size)


def byte_ranges(size):
    """``[(start, stop)]`` of the parts of a ``size``-byte file: :data:`PART_BYTES` each, the last one
    taking any remainder smaller than :data:`MIN_PART`; one (maybe empty) part for a small file."""
    cuts = list(range(0, size, PART_BYTES)) + [size]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < MIN_PART:
        del cuts[-2]
    return list(zip(cuts[:-1], cuts[1:])) or [(0, 0)]


def cut(sizes, first=0):
    """Split records of ``sizes`` bytes (in file order) into parts: ``[(start, stop)]`` record ranges of
    about :data:`PART_BYTES` bytes, the first also holding ``first`` bytes of header; the last part takes any
    remainder smaller than :data:`MIN_PART`."""
    parts, start, acc = [], 0, first
    for i, n in enumerate(sizes):
        acc += n
        if acc >= PART_BYTES:
            parts.append((start, i + 1))
            start, acc = i + 1, 0
    if start < len(sizes):
        if parts and acc < MIN_PART:
            parts[-1] = (parts[-1][0], len(sizes))
        else:
            parts.append((start, len(sizes)))
    return parts or [(0, 0)]
