"""``--progress``: one stderr line for the whole run, estimation included.

Every stage computes through dask (proxy strips, native refinement windows, star detection
tiles, the warp and the sinks), so one dask callback sees all of it: the line shows the
current stage, the tasks done of those submitted so far and the elapsed time. With a
``distributed`` client the tasks run on the cluster, where local callbacks cannot see them:
the line then shows the stage and the sinks' blocks, below the dashboard's address.
The library only draws when the command line asks for it.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time

from rastalign.runtime.scheduler import active_client

_active = None  # the RunProgress of the current run, if any


class RunProgress:
    """Stage name, tasks done / submitted, elapsed seconds; redrawn at most 10 times a second."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.stage_name, self.done, self.total = "start", 0, 0
        self.prefix = ""  # a stack's scenes done
        self.blocks = ""
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.lock = threading.Lock()

    def stage(self, name):
        with self.lock:
            self.stage_name, self.blocks = name, ""
        self.draw(force=True)

    def add(self, n_total=0, n_done=0):
        with self.lock:
            self.total += n_total
            self.done += n_done
        self.draw()

    def show_blocks(self, done, total):
        self.blocks = f" {done}/{total} blocks"
        self.draw(force=done == total)

    def draw(self, force=False):
        now = time.perf_counter()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        tasks = f" {self.done}/{self.total} tasks" if self.total else ""
        self.stream.write(f"\r{self.prefix}{self.stage_name:<14s}{tasks}{self.blocks} {now - self.t0:7.1f} s\033[K")
        self.stream.flush()

    def close(self):
        self.draw(force=True)
        self.stream.write("\n")
        self.stream.flush()


@contextlib.contextmanager
def run_progress(enabled):
    """Show :class:`RunProgress` for the ``with`` block when ``enabled`` (else do nothing)."""
    global _active
    if not enabled:
        yield None
        return
    from dask.callbacks import Callback

    bar = RunProgress()
    client = active_client()
    if client is not None:  # where the tasks can be watched: said once, above the line
        bar.stream.write(f"dask dashboard: {client.dashboard_link}\n")

    class _Tasks(Callback):
        def _start_state(self, dsk, state):
            bar.add(n_total=len(state["ready"]) + len(state["waiting"]) + len(state.get("running", ())))

        def _posttask(self, key, result, dsk, state, worker_id):
            bar.add(n_done=1)

    _active = bar
    try:
        with _Tasks():
            yield bar
    finally:
        _active = None
        bar.close()


def stage(name):
    """Name the current stage of the run (no-op without ``--progress``)."""
    if _active is not None:
        _active.stage(name)


def blocks(done, total):
    """Report the sink's blocks written (no-op without ``--progress``)."""
    if _active is not None:
        _active.show_blocks(done, total)


def scenes(done, total, failed):
    """Report a stack's scenes finished (no-op without ``--progress``)."""
    if _active is not None:
        _active.prefix = f"{done}/{total} scenes" + (f" ({failed} failed)" if failed else "") + " | "
        _active.draw(force=True)


def forget():
    """In a forked worker: the parent draws the line, so this process drops its copy of it (and of its dask
    callback), which would draw stale counts of its own."""
    global _active
    if _active is not None:
        from dask.callbacks import Callback

        _active = None
        Callback.active.clear()
