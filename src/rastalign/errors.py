"""Exceptions raised by rastalign.

Every failure a user can cause is a :class:`RastalignError` subclass whose message
is one line naming the cause; the command-line tools print it without a traceback
(unless ``-v``) and exit non-zero.
"""


class RastalignError(Exception):
    """Base class of all errors rastalign raises on purpose."""

    exit_code = 2


class InputError(RastalignError):
    """An input file or argument cannot be used (missing, unreadable, bad band...)."""


class OutputError(RastalignError):
    """The output cannot be written (exists without overwrite, equals an input...)."""


class OverlapError(RastalignError):
    """The two rasters do not overlap enough to be aligned."""


class AlignmentError(RastalignError):
    """Tie points are too few, too unreliable or inconsistent: no trustworthy model."""

    exit_code = 3


class QualityError(AlignmentError):
    """A model was fitted but fails the quality check."""


class ResourceError(RastalignError):
    """A step would need more memory (or another resource) than the machine has; refused up front."""


class HaloError(RastalignError):
    """A warp chunk would read past the source box planned for it (a bug, never data)."""

    exit_code = 4
