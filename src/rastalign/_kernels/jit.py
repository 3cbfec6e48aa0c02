"""The first run's compilation, said once. The kernels are numba functions compiled on first use and cached
beside their modules (``__pycache__``); on a new machine, or after an upgrade, the first run spends 10-30 s
compiling them. A user at a terminal is told so, once, on stderr; a process whose stderr is not a terminal
(a pipeline, a test, a notebook kernel) is not. (Issue 26 replaces these kernels with compiled code.)"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_said = False


def cached(module_file) -> bool:
    """Whether numba has cached any function of the module ``module_file`` (its ``__pycache__`` index files,
    or those under ``NUMBA_CACHE_DIR``); True when that cannot be known (then nothing is said)."""
    name = Path(module_file).stem
    root = os.environ.get("NUMBA_CACHE_DIR")
    # numba's layout: beside the module, or under NUMBA_CACHE_DIR in a folder named after the module's own
    # (its name, an underscore and a hash of its path)
    parent = Path(module_file).parent.name
    folders = [Path(module_file).parent / "__pycache__"] if not root else \
        [Path(d) for d, _, _ in os.walk(root) if Path(d).name.startswith(f"{parent}_")]
    for folder in folders:
        try:
            if any(f.startswith(f"{name}.") and f.endswith(".nbi") for f in os.listdir(folder)):
                return True
        except OSError:
            continue
    if root:
        return False
    folder = folders[0]
    return not os.access(folder if folder.exists() else folder.parent, os.W_OK)  # unwritable: cached elsewhere


def announce(module_file, stream=None):
    """Say once per process, on a terminal, that the kernels of ``module_file`` are being compiled."""
    global _said
    stream = stream or sys.stderr
    if _said or not getattr(stream, "isatty", lambda: False)() or cached(module_file):
        return
    _said = True
    stream.write("rastalign: compiling its kernels for this machine (once, 10-30 s; later runs load them from "
                 "the cache)\n")
    stream.flush()
