"""What every rastalign command shares: logging set-up, the error contract and signals.

Errors a user can cause become one line ``<prog>: error: <cause>`` on stderr and a
non-zero exit; a traceback appears only with ``-v``. SIGTERM is turned into the same
clean unwinding as Ctrl-C, so temporary files are removed and no partial output is
left at the final path.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from rastalign.errors import RastalignError
from rastalign.io.paths import StoreTimeoutError


class _Terminated(BaseException):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated()


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (robust to redirection, e.g. in notebooks
    or when the CLI's ``main`` is called repeatedly from Python)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(verbose: int, to_console: bool = False):
    import warnings

    # a PNG/JPEG without a geotransform is aligned in pixel space (the summary says so): not a multi-line warning
    warnings.filterwarnings("ignore", message=r"Dataset has no geotransform")
    warnings.filterwarnings("ignore", message=r"The given matrix is equal to Affine.identity")
    level = logging.WARNING
    if to_console or verbose >= 1:
        level = logging.INFO
    if verbose >= 2:
        level = logging.DEBUG
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    pkg = logging.getLogger("rastalign")  # no handlers or levels left over from an earlier call
    pkg.handlers[:] = []
    pkg.setLevel(logging.NOTSET)
    if verbose < 2:
        for noisy in ("distributed", "rasterio", "matplotlib", "fsspec", "asyncio", "tornado"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def run(prog: str, func, verbose: int, kept="no output was written") -> int:
    """Run ``func()`` under the error contract; print its JSON result on stdout. ``kept``: what an interrupted
    run leaves, for its one line."""
    try:
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (e.g. main() called from a worker thread): leave SIGTERM alone
        old = None
    try:
        result = func()
        if result is not None:
            sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
            sys.stdout.flush()
        return 0
    except RastalignError as exc:
        if verbose:
            logging.getLogger(prog).exception("failed")
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        quiet_shutdown(verbose)
        print(f"{prog}: error: interrupted; {kept}", file=sys.stderr)
        return 130
    except _Terminated:
        quiet_shutdown(verbose)
        print(f"{prog}: error: terminated; {kept}", file=sys.stderr)
        return 143
    except MemoryError:
        print(f"{prog}: error: out of memory: use --chunks to bound chunk size", file=sys.stderr)
        return 1
    except OSError as exc:
        if verbose:
            logging.getLogger(prog).exception("failed")
        msg = exc.strerror or str(exc)
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {msg}{where}", file=sys.stderr)
        return 2 if isinstance(exc, StoreTimeoutError) else 1  # a store that stopped answering: the environment
    except Exception as exc:  # a bug: still one line, but say so
        if verbose:
            logging.getLogger(prog).exception("internal error")
        print(f"{prog}: error: internal error ({exc.__class__.__name__}: {_one_line(exc)}); "
              f"rerun with -v for details", file=sys.stderr)
        return 1
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def quiet_shutdown(verbose):
    """After Ctrl-C or SIGTERM the one line is the whole story (see :func:`rastalign.runtime.scheduler.quiet_teardown`);
    ``-v`` keeps everything."""
    if not verbose:
        from rastalign.runtime.scheduler import quiet_teardown

        quiet_teardown()


def _one_line(exc) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return " ".join(text.split())[:500]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line (``prog: error: ...``, exit 2), not the usage block;
    ``-h`` states every option's default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already says its default or there is
    none to state (flags, options that default to nothing)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def parse_chunks(text):
    """``--chunks ROWS[,COLS]`` (also ``ROWSxCOLS``)."""
    try:
        vals = tuple(int(v) for v in str(text).lower().replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWS[,COLS], got {text!r}") from None
    if len(vals) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected ROWS[,COLS], got {text!r}")
    return vals if len(vals) == 2 else (vals[0], vals[0])
