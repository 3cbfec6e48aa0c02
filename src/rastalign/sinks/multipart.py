"""Multipart uploads to object storage, the parts built and sent by the workers.

An object written this way appears at its key only when :func:`complete` runs, after every
part is in; a failed run calls :func:`abort` and leaves nothing behind. Parts are numbered
in file order, so the first part (the header, built last by the client once every tile's
size is known) may be sent after all the others. Every part but the last must hold at least
:data:`MIN_PART` bytes (S3's rule).
"""
from __future__ import annotations

MIN_PART = 5 * 2 ** 20
PART_BYTES = 16 * 2 ** 20  # the size parts are cut to


def _where(url):
    from rastalign.io.paths import filesystem

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


def abort(url, upload_id):
    try:
        fs, bucket, key = _where(url)
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception:  # noqa: BLE001 - best effort: the store expires abandoned uploads anyway
        pass


def cut(sizes, first=0, target=None):
    """Split records of ``sizes`` bytes (in file order) into parts: ``[(start, stop)]`` record ranges of
    about ``target`` bytes, the first also holding ``first`` bytes of header; the last part takes any
    remainder smaller than :data:`MIN_PART`."""
    target = target or PART_BYTES
    parts, start, acc = [], 0, first
    for i, n in enumerate(sizes):
        acc += n
        if acc >= target:
            parts.append((start, i + 1))
            start, acc = i + 1, 0
    if start < len(sizes):
        if parts and acc < MIN_PART:
            parts[-1] = (parts[-1][0], len(sizes))
        else:
            parts.append((start, len(sizes)))
    return parts or [(0, 0)]
