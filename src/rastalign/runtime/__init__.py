"""Where the work runs: schedulers and clusters, the process and thread pools the GIL forces, BLAS threads,
progress. :func:`running` is what a command enters."""
from contextlib import contextmanager


@contextmanager
def running(run):
    """The ``with`` block runs on ``run``'s scheduler (a :class:`~rastalign.params.RunParams`), with its
    progress bar when asked."""
    from rastalign.runtime.progress import run_progress
    from rastalign.runtime.scheduler import use_scheduler

    with use_scheduler(run.scheduler, run.n_workers, run.threads_per_worker), run_progress(run.progress):
        yield
