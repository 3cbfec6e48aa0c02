"""Write-then-rename helpers: a failed run never leaves a half file at the final path."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import OutputError

TMP_TAG = ".rastalign-tmp-"


def temp_path_beside(final, suffix=None):
    """A fresh, private temporary path in the folder of ``final`` (same file system)."""
    final = Path(final)
    folder = final.parent if str(final.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {folder}")
    fd, name = tempfile.mkstemp(prefix=f".{final.name}{TMP_TAG}", suffix=suffix or final.suffix, dir=folder)
    os.close(fd)
    return Path(name)


def discard(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def atomic_write_text(path, text):
    tmp = temp_path_beside(path, ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def check_output_path(output, inputs, overwrite):
    """Refuse an output that is one of the inputs, or exists without ``overwrite``."""
    out = Path(output).resolve()
    for p in inputs:
        if p is not None and Path(p).exists() and out == Path(p).resolve():
            raise OutputError(f"output path is the same file as an input: {output}")
    if out.exists() and not overwrite:
        raise OutputError(f"output exists (use --overwrite to replace it): {output}")
    if out.exists() and out.is_dir():
        raise OutputError(f"output path is a folder: {output}")
    folder = out.parent
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {folder}")
    return out
