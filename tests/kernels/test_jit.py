"""The first run's kernel compilation is said once, on a terminal only."""
import io
import os
import subprocess
import sys

import pytest

from rastalign._kernels import jit


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(jit, "_said", False)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)


def test_said_once_on_a_terminal_when_nothing_is_cached(tmp_path, fresh):
    module = tmp_path / "kern.py"
    module.write_text("")
    (tmp_path / "__pycache__").mkdir()
    term = _Terminal()
    jit.announce(str(module), term)
    jit.announce(str(module), term)
    assert term.getvalue().count("compiling its kernels") == 1


def test_silent_when_cached_or_not_a_terminal(tmp_path, fresh):
    module = tmp_path / "kern.py"
    module.write_text("")
    plain = io.StringIO()
    jit.announce(str(module), plain)  # a pipe, a test, a notebook: nothing
    assert plain.getvalue() == ""
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "kern.f-3.py311.nbi").write_bytes(b"")
    term = _Terminal()
    jit.announce(str(module), term)
    assert term.getvalue() == ""


@pytest.mark.slow
def test_a_first_run_at_a_terminal_says_it_compiles_and_the_second_does_not(tmp_path):
    """A real process with a pseudo-terminal as stderr and an empty numba cache: the line, once; then again
    with the cache the first run filled: nothing."""
    code = ("import numpy as np\nfrom rastalign._kernels.blocks import block_mean\n"
            "block_mean(np.ones((8, 8)), np.ones((8, 8), bool), 2)\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    said = []
    for _ in range(2):
        master, slave = os.openpty()
        proc = subprocess.run([sys.executable, "-c", code], stderr=slave, stdout=subprocess.DEVNULL, env=env,
                              timeout=300)
        os.close(slave)
        out = b""
        try:
            while True:
                chunk = os.read(master, 4096)
                if not chunk:
                    break
                out += chunk
        except OSError:  # the pty's other end closed
            pass
        os.close(master)
        assert proc.returncode == 0, out
        said.append(out.decode().count("compiling its kernels"))
    assert said == [1, 0]
