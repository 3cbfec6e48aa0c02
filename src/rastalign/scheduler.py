"""Choosing the dask scheduler: threads, processes, synchronous, a LocalCluster, or an address."""
from __future__ import annotations

import contextlib
import logging

from .errors import InputError

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10


def _probe(address):
    """Fail fast, with the socket's own cause, on a bad scheme, an unknown host or a refused port."""
    import socket

    scheme, _, loc = address.partition("://")
    if scheme not in ("tcp", "tls", "ws", "wss", "ucx", "inproc"):
        raise InputError(f"cannot reach the dask scheduler at {address}: unknown address scheme {scheme!r}")
    if scheme != "tcp":
        return
    host, _, port = loc.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"cannot reach the dask scheduler at {address}: expected tcp://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        why = exc.strerror or str(exc) or exc.__class__.__name__
        raise InputError(f"cannot reach the dask scheduler at {address}: {why}") from None


def _reason(exc) -> str:
    """A short cause for a failed connection (distributed wraps the socket error in its message)."""
    if isinstance(exc, MemoryError):  # a peer that is not a dask scheduler sent a bogus frame length
        return "the address does not answer like a dask scheduler"
    if isinstance(exc, (TimeoutError, OSError)) and "Timed out" in str(exc):
        return f"no answer within {CONNECT_TIMEOUT_S} s (connection refused or host unreachable)"
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text[:200]}" if text else exc.__class__.__name__


@contextlib.contextmanager
def scheduler_client(params):
    """Yield a ``distributed.Client`` for ``distributed`` or an address, else ``None``.

    ``distributed`` starts a ``LocalCluster`` (``n_workers``, ``threads_per_worker``)
    that lives for the ``with`` block; an address connects to an existing scheduler and
    fails within seconds with a one-line error when it cannot be reached.
    """
    sched = params.scheduler
    if sched != "distributed" and "://" not in sched:
        yield None
        return
    from distributed import Client, LocalCluster

    if sched == "distributed":
        cluster = LocalCluster(n_workers=params.n_workers or 2, threads_per_worker=params.threads_per_worker or 1,
                               processes=True, dashboard_address=":0", silence_logs=logging.ERROR)
        client = Client(cluster)
        log.warning("dask dashboard: %s", client.dashboard_link)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    _probe(sched)
    try:
        client = Client(sched, timeout=f"{CONNECT_TIMEOUT_S}s")
    except Exception as exc:  # noqa: BLE001 - refused, timed out, bad address, or not a dask scheduler at all
        raise InputError(f"cannot reach the dask scheduler at {sched}: {_reason(exc)}") from None
    try:
        yield client
    finally:
        client.close()
