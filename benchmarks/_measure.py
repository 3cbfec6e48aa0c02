"""Run a command and measure wall time and peak RSS of its whole process tree (psutil polling)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
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


def warm_estimate(moving, fixed, repeats=5):
    """Median wall time (s) of ``rastalign.estimate`` of the pair in this process after one run to warm it
    (imports loaded, the files in the page cache): the estimation alone, reads and proxies included."""
    import rastalign

    rastalign.estimate(str(moving), str(fixed))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        rastalign.estimate(str(moving), str(fixed))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def write_results(name, rows, **meta):
    """``benchmarks/results/<name>.json``: the rows, with the machine, the date and the commit."""
    here = Path(__file__).resolve().parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=here).stdout.strip()
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cpus {platform.platform()}",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit, **meta}
    (here / "results").mkdir(exist_ok=True)
    (here / "results" / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
