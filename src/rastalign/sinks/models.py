"""Model files: a model's JSON text published whole at a local path or an object-store URL (read back by
:func:`rastalign.io.models.load_model`)."""
from __future__ import annotations

from rastalign.sinks.atomic import atomic_write_text


def save_model(model, path):
    """Write ``model`` (an :class:`~rastalign.model.model.AlignmentModel`) to ``path`` as JSON, atomically:
    under a temporary name then renamed, or in one object PUT. Returns ``path``."""
    atomic_write_text(path, model.to_json())
    return path
