"""Start-up: what a fresh process pays before (and while) it does any work.

Cases, each the median of ``--runs`` fresh processes (wall time from launch to exit):
``import rastalign``, ``import rastalign.pipelines.pair`` (the VHR pipeline),
``import rastalign.pipelines.fits_pair`` (the FITS pipeline behind ``align-fits``), ``vhr-align-image-pair --help``,
and a whole ``align-fits-simple`` of a ``--size``^2 frame with ``--stars`` stars against
``astroalign.register`` of the same pair in a fresh process (``peers/drivers/astroalign_driver.py``:
read both FITS, register, write FITS, as the command does). The commands run from this interpreter's
scripts folder, not through a shim. The two runs are measured with their peak RSS (``_measure.run_measured``:
psutil polls every 50 ms, so their times are up to 50 ms high); the imports are timed exactly, unpolled.

Every case is run twice: as the environment is, and with a bytecode cache (``PYTHONPYCACHEPREFIX`` in a
temporary folder, after one warm-up run), since an environment with ``PYTHONDONTWRITEBYTECODE`` (as CI
sandboxes often set) compiles an editable install's sources in every process.

    python benchmarks/startup.py [--runs 5 --size 1024 --stars 800] [--src OTHER/src --name startup_before]

``--src`` measures another checkout's package (put first on ``PYTHONPATH``), for before/after figures.
Writes ``benchmarks/results/<name>.json`` (default ``startup``; machine, date, commit) and prints a table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import run_measured, write_results  # noqa: E402

SCRIPTS = Path(sysconfig.get_path("scripts"))
DRIVER = HERE / "peers" / "drivers" / "astroalign_driver.py"


def cases(folder):
    """``(name, command, whole run?)``: whole runs are measured with their peak RSS."""
    py = sys.executable
    src, tmpl = str(folder / "source.fits"), str(folder / "template.fits")
    return [("import rastalign", [py, "-c", "import rastalign"], False),
            ("import rastalign.pipelines.pair", [py, "-c", "import rastalign.pipelines.pair"], False),
            ("import rastalign.pipelines.fits_pair", [py, "-c", "import rastalign.pipelines.fits_pair"], False),
            ("vhr-align-image-pair --help", [str(SCRIPTS / "vhr-align-image-pair"), "--help"], False),
            ("align-fits-simple", [str(SCRIPTS / "align-fits-simple"), src, str(folder / "out.fits"), tmpl,
                                   "--overwrite"], True),
            ("astroalign.register", [py, str(DRIVER), src, tmpl, str(folder / "astroalign.fits")], True)]


def _timed(cmd, env):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return r.returncode, time.perf_counter() - t0, None, r.stdout, r.stderr


def measure(cmd, runs, env, whole):
    walls, peaks = [], []
    for _ in range(runs):
        rc, wall, peak, _, err = run_measured(cmd, env=env) if whole else _timed(cmd, env)
        if rc != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({rc}): {err.strip()[-500:]}")
        walls.append(wall)
        peaks.append(peak)
    out = {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
           "runs_s": [round(w, 3) for w in walls]}
    if whole:
        out["peak_rss_mb"] = round(statistics.median(peaks))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--stars", type=int, default=800)
    ap.add_argument("--src", default=None, help="measure the rastalign package under this folder instead")
    ap.add_argument("--name", default="startup", help="results file name (benchmarks/results/NAME.json)")
    args = ap.parse_args()
    from rastalign.testing.stars import write_star_pair

    base = dict(os.environ)
    if args.src:
        base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(args.src).resolve()), base.get("PYTHONPATH")]))
    rows = []
    with tempfile.TemporaryDirectory(prefix="rastalign-startup-") as tmp:
        folder = Path(tmp)
        write_star_pair(folder, (args.size, args.size), args.stars, rotation_deg=1.5, shift=(12.3, -7.8), seed=1)
        cached = {k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
        for name, cmd, whole in cases(folder):
            _timed(cmd, cached)  # warm-up: writes the bytecode cache
            row = {"case": name, "command": " ".join(Path(c).name if c.startswith(tmp) else c for c in cmd[1:])}
            row["as_is"] = measure(cmd, args.runs, base, whole)
            row["bytecode_cache"] = measure(cmd, args.runs, cached, whole)
            rows.append(row)
            print(_line(row), flush=True)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    write_results(args.name, rows, args=vars(args), load_avg_after=load,
                  dont_write_bytecode=bool(os.environ.get("PYTHONDONTWRITEBYTECODE")))
    print(f"\n{'case':30s} {'as is':>9s} {'.pyc':>9s} {'peak RSS':>9s}   (median of {args.runs} fresh processes; "
          f"load average after: {load})")
    for r in rows:
        print(_line(r))


def _line(row):
    rss = row["as_is"].get("peak_rss_mb")
    return (f"{row['case']:30s} {row['as_is']['median_s']:7.3f} s {row['bytecode_cache']['median_s']:7.3f} s "
            + (f"{rss:6d} MB" if rss is not None else ""))


if __name__ == "__main__":
    main()
