"""Save and load fitted pipelines in a safe native format (skops), never a bare pickle."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ml_project.errors import UserError

MODEL_PATH = Path("models/model.skops")

# Loading executes nothing outside these packages: any other type in a file is refused.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "ml_project.", "builtins.", "collections.")


def save_native(pipeline, path: Path) -> Path:
    """Write `pipeline` with skops; the file appears only once complete."""
    import skops.io as sio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        sio.dump(pipeline, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_native(path: Path):
    """Load a skops file, refusing any type outside `TRUSTED_PREFIXES`."""
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found; run the train stage first")
    untrusted = sio.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise UserError(f"{path}: refusing to load untrusted types: {', '.join(refused)}")
    return sio.load(path, trusted=untrusted)
