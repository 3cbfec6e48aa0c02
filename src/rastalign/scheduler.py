"""Choosing the dask scheduler: threads, processes, synchronous, a LocalCluster, or an address."""
from __future__ import annotations

import contextlib
import logging

from .errors import InputError

log = logging.getLogger(__name__)


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
    try:
        client = Client(sched, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the dask scheduler at {sched}: {exc.__class__.__name__}") from None
    try:
        yield client
    finally:
        client.close()
