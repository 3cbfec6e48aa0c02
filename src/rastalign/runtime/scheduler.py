"""Choosing the dask scheduler: threads, processes, synchronous, a LocalCluster, or an address."""
from __future__ import annotations

import contextlib
import logging
import os
import sys

from rastalign.errors import InputError

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 10


def single_threaded_blas():
    """BLAS on one thread: for a ``with`` block, or from the call on in a worker process. Estimation's dense
    solves are small (RANSAC, the residual field's cross-validation) and run beside our own threads, against
    which OpenBLAS's threads spin: a 400 x 121 product took 6-10 ms instead of 0.25 ms on 2 busy cores. Dask's
    nanny does the same for its workers."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")  # applied now; a ``with`` restores it on exit


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


def active_client():
    """The default ``distributed.Client`` when one is active, else ``None``."""
    if "distributed" not in sys.modules:  # no client can exist; do not pay for the import
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def on_cluster(func, *args):
    """``func(*args)`` on a worker when a ``distributed`` client is active (a remote cluster's workers may
    see files this process cannot, and this process need not open them), else here. Errors are re-raised
    here as they were raised there."""
    client = active_client()
    if client is None or _on_worker():
        return func(*args)
    return client.submit(func, *args, pure=False).result()


def _on_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def fork_context():
    """multiprocessing's ``fork`` context when forking this process is safe, else ``None``: on Linux (macOS's
    system libraries are not fork-safe, Windows cannot fork), in a process with one thread (no lock can be
    held by a thread that fork drops). Forked workers start warm: the imports are the parent's."""
    import multiprocessing
    import threading

    if not sys.platform.startswith("linux") or threading.active_count() != 1:
        return None
    return multiprocessing.get_context("fork")


def local_scheduler(name):
    """dask's own scheduler ``name`` (``threads``, ``synchronous``, ``processes``, ...) as its function, else
    ``name``: given a string, dask imports ``distributed`` (a quarter of a second) to look for a client."""
    from dask.base import named_schedulers

    return named_schedulers.get(str(name).lower(), name)


def compute(*args, **kwargs):
    """``dask.compute`` on the active scheduler: ``dask.config``'s or an active ``distributed`` client's, and
    dask's threads otherwise. Where neither can exist (nothing configured, ``distributed`` never imported),
    the threaded scheduler is named by its function: dask would import ``distributed`` (0.13 s) to look
    for a client."""
    import dask

    if "scheduler" not in kwargs and dask.config.get("scheduler", None) is None and "distributed" not in sys.modules:
        kwargs["scheduler"] = local_scheduler("threads")
    return dask.compute(*args, **kwargs)


def each_in_threads(func, n, n_threads=None):
    """``[func(k) for k in range(n)]`` as tasks of dask's threaded scheduler in this process, for work on data
    this process holds: at most ``n_threads`` at a time (default: ``num_workers`` of ``dask.config``), in a
    few tasks of consecutive ``k`` each; one after another when ``n_threads`` < 2 or the active scheduler is
    ``synchronous``. Never on a process pool a ``processes`` run set in ``dask.config``, which would copy the
    data into another process for every task. Returns the results in order."""
    import dask
    from dask.local import get_sync

    configured = dask.config.get("scheduler", None)
    if n < 2 or (n_threads is not None and n_threads < 2) or local_scheduler(configured) is get_sync:
        return [func(k) for k in range(n)]

    def part(ks):
        return [func(k) for k in ks]

    n_parts = min(n, 4 * (os.cpu_count() or 1))
    parts = [range(n * i // n_parts, n * (i + 1) // n_parts) for i in range(n_parts)]
    workers = {} if n_threads is None else {"num_workers": int(n_threads)}
    with dask.config.set(pool=None):
        done = dask.compute(*[dask.delayed(part, pure=False)(ks) for ks in parts],
                            scheduler=local_scheduler("threads"), **workers)
    return [r for results in done for r in results]


def parallelism() -> int:
    """Threads that run tasks: the active cluster's, else this machine's cores."""
    client = active_client()
    return max(1, sum(client.nthreads().values())) if client is not None else os.cpu_count() or 1


def quiet_teardown():
    """A cluster torn down by Ctrl-C or SIGTERM logs errors from its event loop (tasks never retrieved) and
    its atexit hook: silence them, unless the root logger is at DEBUG (``-vv``)."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    for name in list(logging.root.manager.loggerDict) + ["asyncio", "distributed", "tornado"]:
        if name.split(".")[0] in ("asyncio", "distributed", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    sys.unraisablehook = lambda unraisable: None  # "Exception ignored in atexit callback" and the like


def _quiet_distributed():
    """distributed sets its loggers to INFO when imported (after the CLI set up logging): keep them at
    WARNING unless the root logger is at DEBUG (``-vv``), so a run prints its result, not the cluster's life."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                     "distributed.worker", "distributed.http.proxy", "distributed.client"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # the client's event loop thread logs the futures a Ctrl-C abandons ("Task exception was never
        # retrieved") before the main thread can react: errors that matter reach the user as exceptions
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored in this process for the ``with`` block (where it can be: the main thread), so processes
    started meanwhile inherit the disposition (Python keeps an ignored SIGINT ignored at start-up)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def use_scheduler(scheduler="threads", n_workers=None, threads_per_worker=None):
    """Run the ``with`` block's dask computations on ``scheduler``; yields the ``Client`` or ``None``.

    ``threads``, ``processes`` and ``synchronous`` are dask's own schedulers, set through
    ``dask.config``. ``distributed`` starts a ``LocalCluster`` (``n_workers`` worker processes
    of ``threads_per_worker`` threads, default 2 x 1) that lives for the block; an address
    (``tcp://host:port``) connects to an existing scheduler and fails within seconds with a
    one-line error when it cannot be reached. The client is the default one inside the block,
    so every ``dask.compute`` and ``.compute()`` runs on the cluster. ``current`` keeps whatever
    the caller set up (a ``dask.config`` scheduler or an active ``Client``): a stack's scenes use it.
    """
    import dask

    sched = str(scheduler)
    if sched == "current":
        yield active_client()
        return
    if sched == "processes":
        # one pool for the whole run (dask would start a new one for every compute call)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(n_workers or os.cpu_count() or 1,
                                 mp_context=multiprocessing.get_context("spawn")) as pool, \
                dask.config.set(scheduler=local_scheduler(sched), pool=pool):
            yield None
        return
    if sched != "distributed" and "://" not in sched:
        with dask.config.set(scheduler=local_scheduler(sched)):
            yield None
        return
    from distributed import Client, LocalCluster

    _quiet_distributed()
    if sched == "distributed":
        # the workers' own loggers: a task's error reaches the user as an exception, a worker that loses the
        # scheduler on Ctrl-C has nothing to say; -vv keeps them
        level = logging.ERROR if logging.getLogger().getEffectiveLevel() <= logging.DEBUG else logging.CRITICAL
        with dask.config.set({"logging.distributed": logging.getLevelName(level).lower()}), _sigint_ignored():
            # the workers start with Ctrl-C ignored: a terminal's Ctrl-C reaches the whole process group, and
            # this process alone answers it (one line, then the cluster is closed), not every worker's traceback
            cluster = LocalCluster(n_workers=n_workers or 2, threads_per_worker=threads_per_worker or 1,
                                   processes=True, dashboard_address=":0", silence_logs=level)
        client = Client(cluster)
        log.info("dask dashboard: %s", client.dashboard_link)
        closing = (client, cluster)
    else:
        _probe(sched)
        try:
            client = Client(sched, timeout=f"{CONNECT_TIMEOUT_S}s")
        except Exception as exc:  # noqa: BLE001 - refused, timed out, bad address, or not a dask scheduler at all
            raise InputError(f"cannot reach the dask scheduler at {sched}: {_reason(exc)}") from None
        closing = (client,)
    try:
        yield client
    except BaseException as exc:
        if not isinstance(exc, Exception):  # Ctrl-C, SIGTERM: the closing below must not speak
            quiet_teardown()
        raise
    finally:
        for c in closing:
            c.close()
