"""Run a command and measure wall time and peak RSS of its whole process tree (psutil polling)."""
from __future__ import annotations

import subprocess
import time

import psutil


def run_measured(cmd, poll=0.05, env=None, timeout=None):
    """Return ``(returncode, wall_s, peak_rss_mb, stdout, stderr)``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [ps] + ps.children(recursive=True)
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            peak = max(peak, rss)
        except psutil.NoSuchProcess:
            pass
        if timeout and time.perf_counter() - t0 > timeout:
            proc.kill()
            break
        time.sleep(poll)
    out, err = proc.communicate()
    return proc.returncode, time.perf_counter() - t0, peak / 2 ** 20, out, err
