"""Pools of this process: the one place that starts threads or worker processes of its own.

Stages run as dask tasks on the scheduler the caller chose. Three kinds of work do not fit that
and come here: a compiled kernel that releases the GIL splitting one chunk over row ranges
(:func:`split_rows`), a stack's scenes, each driving its own tasks (:func:`thread_pool`), and work
that holds the GIL (``sep`` detection, a stack's FITS frames) in forked worker processes
(:func:`process_pool`, Linux only, from a single-threaded process, see
:func:`~rastalign.runtime.scheduler.fork_context`). Work on data this process holds runs as dask's
threaded tasks (:func:`~rastalign.runtime.scheduler.each_in_threads`).
"""
from __future__ import annotations

import contextlib
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed

import numpy as np

from rastalign.runtime.scheduler import fork_context

__all__ = ["BrokenExecutor", "as_completed", "process_pool", "split_rows", "thread_pool"]


def split_rows(fn, n, threads):
    """``[fn(r0, r1), ...]`` over at most ``threads`` equal row ranges of ``0:n``, in threads (one call in
    this thread when there is one range)."""
    edges = np.linspace(0, n, max(1, min(int(threads), n)) + 1).astype(int)
    if len(edges) <= 2:
        return [fn(0, n)]
    with ThreadPoolExecutor(len(edges) - 1) as pool:
        return list(pool.map(fn, edges[:-1], edges[1:]))


def thread_pool(n):
    """An executor of ``n`` threads of this process."""
    return ThreadPoolExecutor(max(1, int(n)))


def process_pool(n, initializer=None):
    """An executor of ``n`` forked worker processes, or ``None`` where forking is not safe (then the caller
    runs the work in threads or serially); for a ``with`` block."""
    ctx = fork_context()
    if ctx is None:
        return contextlib.nullcontext()
    return ProcessPoolExecutor(max(1, int(n)), mp_context=ctx, initializer=initializer)
