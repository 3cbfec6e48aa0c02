"""Model files: a saved :class:`~rastalign.model.model.AlignmentModel` read from a local path or an
object-store URL (its JSON text; :func:`rastalign.sinks.models.save_model` writes it)."""
from __future__ import annotations

import os

from rastalign.errors import InputError
from rastalign.io.paths import filesystem, is_url
from rastalign.model.model import AlignmentModel

MAX_BYTES = 64 * 2 ** 20  # a model is a few KB; anything this large is not one


def load_model(path) -> AlignmentModel:
    """The model saved at ``path`` (a local file or a URL), checked field by field: a bad file gives a
    one-line :class:`~rastalign.errors.InputError`, never a bad model."""
    try:
        if is_url(path):
            fs, key = filesystem(path)
            size = fs.size(key)
        else:
            size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise InputError(f"model file is too large to be a model ({size} bytes): {path}")
        raw = fs.cat_file(key) if is_url(path) else open(path, "rb").read()
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"malformed model JSON: {path} is not UTF-8 text") from None
    if not text.lstrip()[:1] in ("{", "["):
        raise InputError(f"malformed model JSON: {path} does not hold a JSON object")
    return AlignmentModel.from_json(text)
