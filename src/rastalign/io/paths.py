"""Paths and URLs: where an input or output lives (local file, object store, GDAL ``/vsi`` path), how
GDAL and fsspec reach it, the checks an input gets before anything is read, and error texts that never
carry a credential."""
from __future__ import annotations

import os
from pathlib import Path

from rastalign.errors import InputError


def absolute_path(path) -> str:
    """Local paths made absolute (a worker's working folder is not the client's); URLs and GDAL's
    ``/vsi...`` paths unchanged."""
    p = str(path)
    return p if "://" in p or p.startswith("/vsi") else os.path.abspath(p)


SCHEMES = {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/", "http": "/vsicurl/", "https": "/vsicurl/"}


def is_url(path) -> bool:
    """A URL (``s3://``, ``https://``...) or one of GDAL's ``/vsi...`` paths: not checked on the local disk."""
    p = str(path)
    return "://" in p or p.startswith("/vsi")


def gdal_path(path) -> str:
    """The path GDAL opens: ``s3://b/k`` -> ``/vsis3/b/k``, ``https://h/p`` -> ``/vsicurl/https://h/p``
    (HTTP range requests), ``/vsi...`` and local paths unchanged. Configures GDAL from the AWS
    variables first (:func:`configure_gdal`)."""
    p = str(path)
    if "://" not in p:
        return p
    configure_gdal()
    scheme, rest = p.split("://", 1)
    prefix = SCHEMES.get(scheme.lower())
    if prefix is None:
        raise InputError(f"unsupported URL scheme {scheme!r}: use s3://, gs://, az://, https:// or a GDAL /vsi path")
    return prefix + (p if prefix == "/vsicurl/" else rest)


def configure_gdal():
    """Map the standard AWS variables onto GDAL's configuration, in this process (workers call it too).

    ``AWS_ENDPOINT_URL`` (botocore's own, e.g. ``http://127.0.0.1:9000``) becomes GDAL's
    ``AWS_S3_ENDPOINT`` (host:port), ``AWS_HTTPS`` (from the scheme) and path-style addressing
    (``AWS_VIRTUAL_HOSTING=FALSE``); ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_REGION`` and ``AWS_NO_SIGN_REQUEST`` are read by GDAL as they are. Network reads retry
    twice and time out after 30 s. Explicit GDAL settings in the environment win.
    """
    env = os.environ
    url = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if url:
        scheme, _, host = url.partition("://")
        env.setdefault("AWS_S3_ENDPOINT", (host or scheme).rstrip("/"))
        env.setdefault("AWS_HTTPS", "NO" if scheme.lower() == "http" else "YES")
        env.setdefault("AWS_VIRTUAL_HOSTING", "FALSE")
    for key, value in (("GDAL_HTTP_MAX_RETRY", "2"), ("GDAL_HTTP_RETRY_DELAY", "0.5"), ("GDAL_HTTP_TIMEOUT", "30"),
                       ("GDAL_HTTP_CONNECTTIMEOUT", "10"), ("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")):
        env.setdefault(key, value)


def redact(text) -> str:
    """``text`` without credentials: the secret and access keys of the environment, and the query
    strings of URLs (presigned signatures)."""
    import re

    out = re.sub(r"(https?://[^\s'\"?]+)\?[^\s'\"]*", r"\1?<redacted>", str(text))
    for key in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        secret = os.environ.get(key)
        if secret and len(secret) >= 4:
            out = out.replace(secret, "<redacted>")
    return out


def network_error(path, message, kind="raster") -> str:
    """A one-line cause for a failed remote open or read of a ``kind`` file (never a credential)."""
    import re

    text = redact(" ".join(str(message).split()))
    low = text.lower()
    # GDAL reports a refused request as a file that "does not exist", after a warning naming the 403
    if re.search(r"(response code|status code|http error)[^;]*?[:\s]403\b", low) or "access denied" in low or \
            "accessdenied" in low or "signaturedoesnotmatch" in low or "invalidaccesskey" in low:
        return (f"access denied: {path} (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or AWS_NO_SIGN_REQUEST=YES "
                f"for a public bucket)")
    if "404" in low or "does not exist" in low or "nosuchkey" in low or "not found" in low:
        return f"not found: {path}"
    if any(k in low for k in ("connection refused", "could not resolve", "couldn't connect", "timed out",
                              "timeout", "failed to connect", "couldn't resolve")):
        return f"cannot reach the server for {path}: {text[:160]}"
    return f"not a readable {kind}: {path} ({text[:160]})"


def filesystem(url):
    """The fsspec filesystem of an object-store URL (``s3://``: s3fs, configured by botocore from the AWS
    variables, ``AWS_ENDPOINT_URL`` included) and the path inside it."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, path


def is_zarr_store(path) -> bool:
    """A folder holding a Zarr store (v2 or v3 metadata at its root)."""
    p = Path(path)
    return p.is_dir() and any((p / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))


def check_input_file(path, kind):
    """Refuse a missing, folder, unreadable or empty input with a one-line error naming it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"file not found: {path}")
    if p.is_dir():
        raise InputError(f"not a {kind} file (a folder): {path}")
    if not os.access(p, os.R_OK):
        raise InputError(f"file is not readable (permission denied): {path}")
    if p.stat().st_size == 0:
        raise InputError(f"file is empty: {path}")
    return p


def read_text(path) -> str:
    """The text of a local file or of an object-store URL (the reading twin of :func:`atomic_write_text`)."""
    if is_url(path):
        fs, key = filesystem(path)
        return fs.cat_file(key).decode("utf-8")
    with open(path, encoding="utf-8") as fh:
        return fh.read()
