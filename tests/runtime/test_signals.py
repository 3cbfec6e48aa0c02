"""Interruption: SIGINT or SIGTERM during the warp leaves no file at the output path and no
temporary files (the work folder survives only with --keep-temp-dir)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rastalign.sinks.atomic import TMP_TAG
from rastalign.testing.pairs import write_pair

pytestmark = pytest.mark.slow  # subprocesses, clusters or notebook kernels: outside the inner loop


@pytest.fixture(scope="module")
def large_pair(tmp_path_factory):
    """Large enough that the warp takes a couple of seconds with --split-factor 6."""
    d = tmp_path_factory.mktemp("large")
    moving, fixed, _ = write_pair(d, (2400, 2400), rotation_deg=0.2, shift=(3.3, -2.1), bands=3, seed=3)
    return Path(moving), Path(fixed)


def _interrupt(moving, fixed, folder, sig, extra=()):
    out_dir, tmp_dir = folder / "out", folder / "tmp"
    out_dir.mkdir()
    tmp_dir.mkdir()
    out = out_dir / "aligned.tif"
    env = dict(os.environ, TMPDIR=str(tmp_dir))
    proc = subprocess.Popen([sys.executable, "-m", "rastalign.cli.vhr", "--moving-image", str(moving),
                             "--fixed-image", str(fixed), "--output-image", str(out), "--split-factor", "6",
                             "--resampling", "lanczos", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not any(TMP_TAG in p for p in os.listdir(out_dir)):  # the writer exists: warping
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the warp never started"
            time.sleep(0.02)
        time.sleep(0.2)
        assert proc.poll() is None, "finished before the signal: make the pair larger"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stdout, stderr, out, tmp_dir


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_signal_during_warp_leaves_nothing(sig, code, word, large_pair, tmp_path):
    moving, fixed = large_pair
    sizes = (moving.stat().st_size, fixed.stat().st_size)
    rc, stdout, stderr, out, tmp_dir = _interrupt(moving, fixed, tmp_path, sig)
    assert rc == code, stderr
    assert stdout == ""
    assert stderr.strip() == f"vhr-align-image-pair: error: {word}; no output was written"
    assert os.listdir(out.parent) == []  # no output, no model, no temporary file
    assert os.listdir(tmp_dir) == []  # the work folder is gone too
    assert (moving.stat().st_size, fixed.stat().st_size) == sizes


def test_sigterm_with_keep_temp_dir_keeps_only_the_work_folder(large_pair, tmp_path):
    moving, fixed = large_pair
    keep = tmp_path / "keep"
    keep.mkdir()
    rc, stdout, stderr, out, _ = _interrupt(moving, fixed, tmp_path, signal.SIGTERM,
                                            ("--keep-temp-dir", "--temp-dir", str(keep)))
    assert rc == 143, stderr
    assert os.listdir(out.parent) == []
    kept = os.listdir(keep)
    assert len(kept) == 1 and kept[0].startswith("rastalign_")


@pytest.mark.parametrize("after", [0.3, 1.0])
def test_ctrl_c_on_a_local_cluster_is_one_line(after, large_pair, tmp_path):
    """--scheduler distributed --progress: Ctrl-C once the LocalCluster is up (``after`` seconds past its dashboard line:
    estimating, then warping) prints the dashboard line and the one error line; no traceback from the
    event loop, the atexit hook or the workers."""
    import threading

    moving, fixed = large_pair
    out = tmp_path / "aligned.tif"
    proc = subprocess.Popen([sys.executable, "-m", "rastalign.cli.vhr", "--moving-image", str(moving),
                             "--fixed-image", str(fixed), "--output-image", str(out), "--split-factor", "6",
                             "--scheduler", "distributed", "--progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    said, up = [], threading.Event()

    def read():
        for line in proc.stderr:
            said.append(line)
            if "dask dashboard" in line:
                up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert up.wait(120), "".join(said)
        time.sleep(after)
        if proc.poll() is not None:
            pytest.skip("the run finished before the signal")
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group, workers included
        proc.wait(timeout=90)
        reader.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = "".join(said)
    if proc.returncode == 0 and out.exists():
        pytest.skip("the run completed before the signal took effect")
    # the progress line's redraws end in an erase-to-end-of-line; every other line is a message
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.endswith("\033[K")]
    assert proc.returncode == 130 and lines[-1] == "vhr-align-image-pair: error: interrupted; no output was written"
    assert len(lines) <= 2 and "Traceback" not in stderr and "ERROR" not in stderr, stderr
    assert not out.exists()
