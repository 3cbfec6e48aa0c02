"""``rastalign apply`` of a large uint16 scene on a real cluster: what reaches the client?

A scheduler and two workers are started as separate processes on 127.0.0.1, each in an
empty folder of its own. ``rastalign apply`` (a 0.25 deg rotation + shift model) then runs
with ``--scheduler tcp://...`` for each output format, in a client process that records
its own ``/proc/self/io`` ``rchar`` (bytes read from files and pipes), the bytes its dask
comms received from the scheduler and workers (``rchar`` does not count socket ``recv``), and
its peak RSS, all *after* its imports, so the figures are the run's own. The same run with the local
``threads`` scheduler is timed beside it. Acceptance (issue 12): for Zarr the client reads
under 5% of the raw output size; for COG at most the final file's size (counting both).

    python benchmarks/distributed.py [--size 16384] [--formats Zarr COG GTiff]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
# this script's own name would shadow the ``distributed`` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
SUFFIX = {"Zarr": "zarr", "COG": "cog.tif", "GTiff": "tif", "FITS": "fits"}

CLIENT = r"""
import json, resource, sys, time
import rastalign.cli.demo, rastalign.pipelines.pair, rastalign.sinks.output, rastalign.sinks.geotiff, distributed, zarr, xarray
import distributed.comm.tcp as tcp
def rchar():
    return int(next(l for l in open("/proc/self/io") if l.startswith("rchar")).split()[1])
# rchar counts read() on files and pipes, not recv() on sockets: count what dask's comms receive too
net = [0]
_from_frames = tcp.from_frames
async def counting(frames, *a, **kw):
    net[0] += sum(memoryview(f).nbytes for f in frames)
    return await _from_frames(frames, *a, **kw)
tcp.from_frames = counting
r0, t0 = rchar(), time.perf_counter()
rc = rastalign.cli.demo.main(sys.argv[1:])
print(json.dumps({"rc": rc, "rchar": rchar() - r0, "net": net[0], "wall_s": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), file=sys.stderr)
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(root, n_workers=2, threads=1):
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = []
    d = root / "scheduler"
    d.mkdir()
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                   "--port", str(port), "--dashboard-address", ":0"], cwd=d,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for k in range(n_workers):
        d = root / f"worker{k}"
        d.mkdir()
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads",
                                       str(threads), "--no-dashboard", "--local-directory", str(d)], cwd=d,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    with Client(addr, timeout="60s") as c:
        c.wait_for_workers(n_workers, timeout=120)
    return addr, procs


def write_scene(folder, n):
    """A uint16 moving scene and a model JSON (0.25 deg, (3.37, -2.61) px) for ``rastalign apply``."""
    import numpy as np

    from rastalign import save_model
    from rastalign.model import AlignmentModel
    from rastalign.testing.pairs import write_pair

    moving, _, _ = write_pair(folder, (n, n), rotation_deg=0.25, shift=(3.37, -2.61), seed=2)
    th = np.deg2rad(0.25)
    c = (n - 1) / 2.0
    lin = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    t = np.array([c, c]) - lin @ np.array([c, c]) + np.array([3.37, -2.61])
    model = AlignmentModel(np.column_stack([lin, t]), output_shape=(n, n), moving_shape=(n, n))
    save_model(model, folder / "model.json")
    return moving, folder / "model.json"


def size_of(path):
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def run_client(args):
    r = subprocess.run([sys.executable, "-c", CLIENT, *args], capture_output=True, text=True, cwd=tempfile.gettempdir())
    line = [x for x in r.stderr.strip().splitlines() if x.startswith("{")]
    if r.returncode or not line:
        raise RuntimeError(f"client failed: {r.stderr.strip()[-600:]}")
    return json.loads(line[-1])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--formats", nargs="+", default=["Zarr", "COG", "GTiff"])
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="rastalign_dist_"))
    root.mkdir(parents=True, exist_ok=True)
    n = args.size
    t0 = time.perf_counter()
    moving, model = write_scene(root / "data", n)
    print(f"scene {n}^2 uint16 written in {time.perf_counter() - t0:.0f} s", flush=True)
    raw = n * n * 2
    addr, procs = start_cluster(root)
    rows = []
    try:
        for fmt in args.formats:
            for sched in (addr, "threads"):
                out = root / f"out_{'tcp' if '://' in sched else sched}.{SUFFIX[fmt]}"
                res = run_client(["apply", "--model", str(model), "--moving-image", str(moving), "--output-image",
                                  str(out), "--scheduler", sched, "--overwrite"])
                final = size_of(out)
                row = {"format": fmt, "scheduler": "tcp (2 workers x 1 thread)" if "://" in sched else sched,
                       "wall_s": round(res["wall_s"], 2), "client_rchar_mb": round(res["rchar"] / 2 ** 20, 1),
                       "client_net_mb": round(res["net"] / 2 ** 20, 1),
                       "client_in_over_raw": round((res["rchar"] + res["net"]) / raw, 4),
                       "client_in_over_final": round((res["rchar"] + res["net"]) / final, 4),
                       "client_peak_rss_mb": round(res["peak_rss_mb"], 0), "raw_output_mb": round(raw / 2 ** 20, 1),
                       "final_size_mb": round(final / 2 ** 20, 1),
                       "rchar_over_raw": round(res["rchar"] / raw, 4), "rchar_over_final": round(res["rchar"] / final, 4)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink()
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'format':7s} {'scheduler':28s} {'wall s':>7s} {'rchar MB':>9s} {'net MB':>7s} {'in/raw':>7s} "
          f"{'in/final':>8s} {'final MB':>9s} {'client RSS MB':>13s}")
    for r in rows:
        print(f"{r['format']:7s} {r['scheduler']:28s} {r['wall_s']:7.1f} {r['client_rchar_mb']:9.1f} "
              f"{r['client_net_mb']:7.1f} {r['client_in_over_raw']:7.4f} {r['client_in_over_final']:8.3f} "
              f"{r['final_size_mb']:9.1f} {r['client_peak_rss_mb']:13.0f}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cpus {platform.platform()}",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit, "size": n}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "distributed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
