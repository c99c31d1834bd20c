"""Save and load fitted pipelines in a safe native format (skops), never a bare pickle."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from ml_project.atomic import atomic_file
from ml_project.errors import UserError

MODEL_PATH = Path("models/model.skops")

# Loading executes nothing outside these packages: any other type in a file is refused.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "ml_project.", "builtins.", "collections.")


def _skops_io():
    """Import skops.io without letting it import torch.

    On import, skops lists scikit-learn's estimators. That walk imports every sklearn
    subpackage, including `sklearn.externals.array_api_compat.torch`, which imports torch
    (about 3 s) whenever torch is installed. The walk skips packages that fail to import, so
    that one package is masked for the duration of the import.
    """
    masked = "sklearn.externals.array_api_compat.torch"
    if "skops.io" in sys.modules or masked in sys.modules:
        return importlib.import_module("skops.io")
    importlib.import_module("sklearn")  # imported normally, before the mask is in place
    sys.modules[masked] = None  # type: ignore[assignment]  # makes importing it fail
    try:
        return importlib.import_module("skops.io")
    finally:
        del sys.modules[masked]


def save_native(pipeline, path: Path) -> Path:
    """Write `pipeline` with skops; the file appears only once complete."""
    with atomic_file(path) as tmp:
        _skops_io().dump(pipeline, tmp)
    return Path(path)


def trusted_types(path: Path) -> list[str]:
    """The types in a skops file that skops does not trust by default, all within
    `TRUSTED_PREFIXES`; any other type is refused with a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found; run the train stage first")
    untrusted = _skops_io().get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise UserError(f"{path}: refusing to load untrusted types: {', '.join(refused)}")
    return untrusted


def load_native(path: Path):
    """Load a skops file, refusing any type outside `TRUSTED_PREFIXES`."""
    return _skops_io().load(path, trusted=trusted_types(path))
