"""Write-then-rename helpers: a failed run never leaves a half file at the final path.

Temporary files are created with :func:`tempfile.mkstemp` (``O_EXCL``, a random name,
never a predictable one) in the folder of the final file, so the rename is atomic;
they are then given the permissions an ordinary new file would get (``0666 & ~umask``)
so that the renamed output is not left private to the user who ran rastalign.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rastalign.errors import OutputError
from rastalign.io.paths import filesystem, is_url, is_zarr_store, store_cause
from rastalign.sinks import multipart

TMP_TAG = ".rastalign-tmp-"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_folder(folder: Path):
    if not folder.exists():
        raise OutputError(f"output folder does not exist: {folder}")
    if not folder.is_dir():
        raise OutputError(f"output folder is not a folder: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {folder}")


def temp_path_beside(final, suffix=None):
    """A fresh, private temporary path in the folder of ``final`` (same file system)."""
    final = Path(final)
    folder = final.parent
    check_folder(folder)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}{TMP_TAG}", suffix=suffix or final.suffix, dir=folder)
    except OSError as exc:  # e.g. a read-only file system, or root's permission bypass refused
        raise OutputError(f"cannot create a file in the output folder {folder}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(name)


def local_temp(final, suffix=None):
    """A fresh temporary file for writing ``final``: beside it (an atomic rename later), or for an
    object-store URL in this machine's temporary folder (uploaded by :func:`publish`)."""
    if not is_url(final):
        return temp_path_beside(final, suffix)
    name = str(final).rstrip("/").rsplit("/", 1)[-1]
    fd, tmp = tempfile.mkstemp(prefix=f".{name}{TMP_TAG}", suffix=suffix or "")
    os.close(fd)
    return Path(tmp)


def publish(tmp, final):
    """Move the complete file ``tmp`` to ``final``: a rename, or a multipart upload that is completed only once
    every part is in and aborted on failure (:func:`rastalign.sinks.multipart.upload_file`): the object
    appears whole or not at all, also when the store stops answering (``RASTALIGN_STORE_TIMEOUT``)."""
    if not is_url(final):
        os.replace(tmp, final)
        return
    try:
        multipart.upload_file(str(tmp), str(final))
    finally:
        discard(tmp)


def discard(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path, data: bytes):
    """Publish ``data`` whole at ``path``: a local file under a temporary name then renamed, or an object in
    one PUT (it appears complete or not at all)."""
    if is_url(path):
        try:
            fs, key = filesystem(path)
            fs.pipe_file(key, data)
        except Exception as exc:  # noqa: BLE001 - botocore/aiohttp raise many kinds
            raise OutputError(f"cannot write {path}: {store_cause(exc)}") from None
        return
    tmp = temp_path_beside(path, ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        discard(tmp)


def _same_file(a: Path, b: Path) -> bool:
    """Same path once resolved (symlinks, ``..``, relative spellings), or the same inode (hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_distinct_outputs(outputs: dict):
    """Refuse two outputs of one run that name the same file: ``outputs`` maps each output's option name to
    its path (None: not written)."""
    seen = []
    for name, path in outputs.items():
        if path is None:
            continue
        for other, p in seen:
            if str(path) == str(p) or (not is_url(path) and not is_url(p) and _same_file(Path(path), Path(p))):
                raise OutputError(f"{name} and {other} name the same file: {path}")
        seen.append((name, path))


def check_output_path(output, inputs, overwrite):
    """Refuse an output that is one of the inputs, or exists without ``overwrite``.

    ``inputs`` may hold ``None`` (ignored) and paths that do not exist yet (another
    output of the same run): an output is refused when it names the same file as any
    of them, whatever the spelling.
    """
    if is_url(output):
        return _check_url_output(output, inputs, overwrite)
    out = Path(output).resolve()
    for p in inputs:
        if p is not None and _same_file(Path(output), Path(p)):
            raise OutputError(f"output path is the same file as an input: {output}")
    if out.exists() and out.is_dir() and not is_zarr_store(out):
        raise OutputError(f"output path is a folder: {output}")
    if out.exists() and not out.is_file() and not out.is_dir():
        # a device, FIFO or socket: replacing it would destroy it (e.g. /dev/full), --overwrite or not
        raise OutputError(f"output path exists and is not a regular file (a device, FIFO or socket): {output}")
    if out.exists() and not overwrite:
        raise OutputError(f"output exists (--overwrite, or overwrite=True from Python, replaces it): {output}")
    check_folder(out.parent)
    return out


def _check_url_output(output, inputs, overwrite):
    """An object-store output: not one of the inputs, and absent unless ``overwrite``."""
    if any(p is not None and str(p).rstrip("/") == str(output).rstrip("/") for p in inputs):
        raise OutputError(f"output path is the same object as an input: {output}")
    try:
        fs, key = filesystem(output)
        exists = fs.exists(key)
    except Exception as exc:  # noqa: BLE001 - unreachable endpoint, missing bucket, denied, no answer...
        raise OutputError(f"cannot write to {output}: {store_cause(exc)}") from None
    if exists and not overwrite:
        raise OutputError(f"output exists (--overwrite, or overwrite=True from Python, replaces it): {output}")
    return output

