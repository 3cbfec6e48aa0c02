"""Paths and URLs: where an input or output lives (local file, object store, GDAL ``/vsi`` path), how
GDAL and fsspec reach it, the checks an input gets before anything is read, and error texts that never
carry a credential.

Every object-store request is bounded in time: ``RASTALIGN_STORE_TIMEOUT`` (seconds, default 60) is how
long one request may go unanswered, its retries included. It sets GDAL's HTTP timeouts and retries
(:func:`configure_gdal`, for reads of ``s3://`` and ``https://`` rasters) and those of the s3fs file
system every write and object call goes through (:func:`filesystem`); a request that gets no answer in
time raises :class:`StoreTimeoutError`, worded by :func:`store_cause`.
"""
from __future__ import annotations

import math
import os
import re
import threading
from pathlib import Path

from rastalign.errors import InputError


def absolute_path(path) -> str:
    """Local paths made absolute (a worker's working folder is not the client's); URLs and GDAL's
    ``/vsi...`` paths unchanged."""
    return str(path) if is_url(path) else os.path.abspath(str(path))


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


STORE_TIMEOUT_VAR = "RASTALIGN_STORE_TIMEOUT"
DEFAULT_STORE_TIMEOUT = 60.0  # seconds one object-store request may go unanswered, retries included
STORE_ATTEMPTS = 3  # a request and two retries, each given a third of the time
UPLOAD_RATE = 2 ** 20  # bytes/s: a request sending a body gets one more second per MiB (a slow link, not a stall)


def store_timeout() -> float:
    """``RASTALIGN_STORE_TIMEOUT`` in seconds (default 60): how long an object-store request may go
    unanswered, its retries included, before the run fails with a one-line error."""
    raw = os.environ.get(STORE_TIMEOUT_VAR, "").strip()
    if not raw:
        return DEFAULT_STORE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{STORE_TIMEOUT_VAR} must be a number of seconds greater than 0, got {raw!r}")
    return value


def _seconds(value) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def gdal_store_settings(timeout=None) -> dict:
    """GDAL's HTTP settings for a store timeout of ``timeout`` s: :data:`STORE_ATTEMPTS` tries (GDAL retries
    time-outs and 5xx answers, 0.5 s then about 1 s apart), each allowed a quarter of it (connecting: at
    most 10 s), since an open that fails asks once more: about ``timeout`` in all, 15 s a request by default.
    ``GDAL_HTTP_TIMEOUT`` is a whole request's time: a very slow link may need a larger store timeout."""
    each = (timeout or store_timeout()) / (STORE_ATTEMPTS + 1)
    return {"GDAL_HTTP_TIMEOUT": f"{each:.3g}", "GDAL_HTTP_CONNECTTIMEOUT": f"{min(10.0, each):.3g}",
            "GDAL_HTTP_MAX_RETRY": str(STORE_ATTEMPTS - 1), "GDAL_HTTP_RETRY_DELAY": "0.5"}


_SET_BY_US = {}  # the GDAL variables configure_gdal set, and to what: updated when the timeout changes


def configure_gdal():
    """Map the standard AWS variables and ``RASTALIGN_STORE_TIMEOUT`` onto GDAL's configuration, in this
    process (workers call it too).

    ``AWS_ENDPOINT_URL`` (botocore's own, e.g. ``http://127.0.0.1:9000``) becomes GDAL's
    ``AWS_S3_ENDPOINT`` (host:port), ``AWS_HTTPS`` (from the scheme) and path-style addressing
    (``AWS_VIRTUAL_HOSTING=FALSE``); ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_REGION`` and ``AWS_NO_SIGN_REQUEST`` are read by GDAL as they are. Network reads get
    :func:`gdal_store_settings` (by default 3 tries of at most 15 s each). Explicit GDAL settings in
    the environment win.
    """
    env = os.environ
    url = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if url:
        scheme, _, host = url.partition("://")
        env.setdefault("AWS_S3_ENDPOINT", (host or scheme).rstrip("/"))
        env.setdefault("AWS_HTTPS", "NO" if scheme.lower() == "http" else "YES")
        env.setdefault("AWS_VIRTUAL_HOSTING", "FALSE")
    for key, value in dict(gdal_store_settings(), GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR").items():
        if key not in env or env[key] == _SET_BY_US.get(key):
            env[key] = _SET_BY_US[key] = value


class StoreTimeoutError(OSError):
    """An object-store request that got no answer within ``RASTALIGN_STORE_TIMEOUT`` (its retries
    included); ``seconds``: how long it waited."""

    def __init__(self, message, seconds=None):
        super().__init__(message)
        self.seconds = seconds


def timeout_text(seconds, gdal=False) -> str:
    """``the object store timed out after N s (...)`` (``seconds`` waited, if known), naming the setting that
    bounds the wait: ``RASTALIGN_STORE_TIMEOUT``, or for GDAL's reads the GDAL variables a user set."""
    try:
        derived = gdal_store_settings()
    except InputError:
        derived = {}
    own = [k for k in ("GDAL_HTTP_TIMEOUT", "GDAL_HTTP_MAX_RETRY") if gdal and k in os.environ
           and os.environ[k] != derived.get(k)]
    if own:
        setting = ", ".join(f"{k}={os.environ[k]}" for k in own)
    else:
        try:
            setting = f"{STORE_TIMEOUT_VAR}={store_timeout():g} s"
        except InputError:
            setting = STORE_TIMEOUT_VAR
    after = "" if seconds is None else f" after {_seconds(seconds)} s"
    return f"the object store timed out{after} (no answer; {setting})"


def is_store_timeout(exc) -> bool:
    """A time-out of an object-store request, however raised (ours, fsspec's, botocore's, a worker's)."""
    if isinstance(exc, (StoreTimeoutError, TimeoutError)):
        return True
    name = type(exc).__name__
    return name in ("ReadTimeoutError", "ConnectTimeoutError", "FSTimeoutError", "ServerTimeoutError")


def store_cause(exc, seconds=None) -> str:
    """The one-line cause of a failed object-store call (never a credential): :func:`timeout_text` for a
    time-out, else the exception's text."""
    if is_store_timeout(exc):
        return timeout_text(getattr(exc, "seconds", None) or seconds)
    return redact(" ".join(str(exc).split()) or type(exc).__name__)[:200]


def redact(text) -> str:
    """``text`` without credentials: the secret and access keys of the environment, and the query
    strings of URLs (presigned signatures)."""
    out = re.sub(r"(https?://[^\s'\"?]+)\?[^\s'\"]*", r"\1?<redacted>", str(text))
    for key in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        secret = os.environ.get(key)
        if secret and len(secret) >= 4:
            out = out.replace(secret, "<redacted>")
    return out


def network_error(path, message, kind="raster", seconds=None) -> str:
    """A one-line cause for a failed remote open or read of a ``kind`` file (never a credential);
    ``seconds``: how long the failed open or read took, to tell a store that stopped answering."""
    text = redact(" ".join(str(message).split()))
    low = text.lower()
    # GDAL reports a refused request as a file that "does not exist", after a warning naming the 403
    if re.search(r"(response code|status code|http error)[^;]*?[:\s]403\b", low) or "access denied" in low or \
            "accessdenied" in low or "signaturedoesnotmatch" in low or "invalidaccesskey" in low:
        return (f"access denied: {path} (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or AWS_NO_SIGN_REQUEST=YES "
                f"for a public bucket)")
    # no answer at all: curl's "timed out", or GDAL's "response_code=0" / "HTTP error code: 0" once it waited
    # as long as one request may (a refused connection fails at once)
    timed_out = "timed out" in low or "timeout" in low
    silent = re.search(r"response_code=0\b|http error code: 0\b", low) is not None
    if timed_out or (silent and seconds is not None and seconds >= _gdal_request_timeout()):
        return f"cannot read {path}: {timeout_text(seconds, gdal=True)}"
    if re.search(r"\b404\b", low) or "does not exist" in low or "nosuchkey" in low or "not found" in low:
        return f"not found: {path}"
    if silent or any(k in low for k in ("connection refused", "could not resolve", "couldn't connect",
                                        "failed to connect", "couldn't resolve")):
        return f"cannot reach the server for {path}: {text[:160]}"
    return f"not a readable {kind}: {path} ({text[:160]})"


def _gdal_request_timeout() -> float:
    """How long GDAL waits for one HTTP request (``GDAL_HTTP_TIMEOUT``), in seconds."""
    try:
        return float(os.environ.get("GDAL_HTTP_TIMEOUT") or gdal_store_settings()["GDAL_HTTP_TIMEOUT"])
    except (ValueError, InputError):
        return DEFAULT_STORE_TIMEOUT / (STORE_ATTEMPTS + 1)


def filesystem(url, asynchronous=False):
    """The fsspec filesystem of an object-store URL and the path inside it. ``s3://``: s3fs configured by
    botocore from the AWS variables (``AWS_ENDPOINT_URL`` included), every request bounded by
    ``RASTALIGN_STORE_TIMEOUT`` (:func:`s3_filesystem`); other schemes: fsspec's own."""
    import fsspec

    scheme = str(url).split("://", 1)[0].lower() if "://" in str(url) else ""
    if scheme in ("s3", "s3a"):
        fs = s3_filesystem(asynchronous=asynchronous)
        return fs, fs._strip_protocol(str(url))
    return fsspec.core.url_to_fs(str(url), **({"asynchronous": True} if asynchronous else {}))


def s3_filesystem(timeout=None, asynchronous=False):
    """An s3fs file system whose every request is bounded: botocore's ``connect_timeout`` and
    ``read_timeout`` of a third of ``timeout`` (``RASTALIGN_STORE_TIMEOUT``) and 3 attempts (its
    ``standard`` retry mode), no second retry loop in s3fs, and a deadline of ``timeout`` on the whole
    request (one more second per MiB sent): aiohttp does not time a request whose body or
    ``100-continue`` answer is pending, so without it a paused server hangs an upload for ever."""
    timeout = float(timeout or store_timeout())
    each = timeout / STORE_ATTEMPTS
    config = {"connect_timeout": min(10.0, each), "read_timeout": each,
              "retries": {"total_max_attempts": STORE_ATTEMPTS, "mode": "standard"}}
    return _bounded_s3_class()(config_kwargs=config, store_timeout=timeout, asynchronous=asynchronous)


_S3_CLASS = []
_S3_LOCK = threading.Lock()


def _bounded_s3_class():
    """:class:`s3fs.S3FileSystem` with a deadline on every request (built on first use: importing s3fs
    is slow, and most runs never reach a store)."""
    with _S3_LOCK:
        if not _S3_CLASS:
            _S3_CLASS.append(_build_s3_class())
        return _S3_CLASS[0]


def _build_s3_class():
    import asyncio
    import time

    from fsspec.asyn import sync_wrapper
    from s3fs import S3FileSystem

    class BoundedS3FileSystem(S3FileSystem):
        retries = 1  # botocore retries within the deadline (config_kwargs); s3fs's loop would multiply them

        def __init__(self, *args, store_timeout=DEFAULT_STORE_TIMEOUT, **kwargs):
            self.store_timeout = float(store_timeout)
            super().__init__(*args, **kwargs)

        async def _call_s3(self, method, *args, **kwargs):
            body = kwargs.get("Body")
            sent = len(body) if isinstance(body, (bytes, bytearray, memoryview)) else 0
            t0 = time.monotonic()
            task = asyncio.ensure_future(super()._call_s3(method, *args, **kwargs))
            try:
                done, _ = await asyncio.wait({task}, timeout=self.store_timeout + sent / UPLOAD_RATE)
            except BaseException:
                task.cancel()
                raise
            try:
                if not done:
                    # cancelled, not awaited: a request stuck writing to a paused server may never finish
                    # cancelling (asyncio.wait_for would wait for it)
                    task.add_done_callback(_retrieve)
                    task.cancel()
                    raise asyncio.TimeoutError()
                return task.result()
            except Exception as exc:  # noqa: BLE001 - asyncio's, botocore's and aiohttp's time-outs
                if not is_store_timeout(exc):
                    raise
                waited = time.monotonic() - t0
                raise StoreTimeoutError(timeout_text(waited), waited) from None

        call_s3 = sync_wrapper(_call_s3)  # s3fs's own wraps its _call_s3, not this one

    BoundedS3FileSystem.__module__, BoundedS3FileSystem.__qualname__ = __name__, "BoundedS3FileSystem"
    return BoundedS3FileSystem


def _retrieve(task):
    """Collect the outcome of an abandoned request, so that asyncio does not log it."""
    if not task.cancelled():
        task.exception()


def __getattr__(name):
    """``BoundedS3FileSystem`` is built on first use (and found so when a worker unpickles one)."""
    if name == "BoundedS3FileSystem":
        return _bounded_s3_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
