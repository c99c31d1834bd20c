"""Save and load fitted pipelines in a safe native format (skops), never a bare pickle.

A model file may come from someone else: `dvc pull`, `dvc exp pull` and `dvc exp apply` bring
teammates' outputs from a shared remote. skops reconstructs objects from a JSON schema and
refuses types it does not know unless they are passed as trusted. This module trusts exactly
the types this project's own pipelines hold, by fully qualified name: never a module prefix
(trusting `builtins.` or `numpy.` trusts `builtins.exec` and
`numpy.testing._private.utils.runstring`), never a function, never a method.
"""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path

from ml_project.atomic import atomic_file
from ml_project.errors import UserError

MODEL_PATH = Path("models/model.skops")

# Types every pipeline may hold besides its estimator's: the preprocessing this project adds
# around each model, the averaged fold models of `train.cv_final: ensemble`, and the dtype
# objects of numpy arrays. Each model's own types are in its registry spec (`trusted_types`).
PIPELINE_TYPES = frozenset(
    {
        "ml_project.models.preprocessing.CastFloat32",
        "ml_project.models.ensembles.FoldEnsemble",
        "numpy.dtype",
    }
)


def allowed_types() -> frozenset[str]:
    """The exact type names a model file may contain beyond what skops trusts by default."""
    from ml_project.models import MODELS

    return PIPELINE_TYPES.union(*(spec.trusted_types for spec in MODELS.values()))


def skops_io():
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
        skops_io().dump(pipeline, tmp)
    return Path(path)


def trusted_types(path: Path) -> list[str]:
    """The types in a skops file that skops does not trust by default.

    Every one must be in `allowed_types()`; otherwise, and for a file skops cannot read, this
    raises a one-line `UserError` before anything in the file is constructed.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found; run the train stage first")
    try:
        untrusted = skops_io().get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a readable skops model file ({_first_line(exc)})") from None
    refused = sorted(set(untrusted) - allowed_types())
    if refused:
        raise UserError(
            f"{path}: refusing to load a model holding types this project never saves: "
            f"{', '.join(refused)} (a crafted or foreign file; do not trust its source)"
        )
    return untrusted


def load_native(path: Path):
    """Load a skops file, refusing any type outside `allowed_types()`."""
    trusted = trusted_types(path)
    try:
        return skops_io().load(path, trusted=trusted)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a readable skops model file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Operator domains this project's ONNX exports use (skl2onnx's standard and ML operators).
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


def check_onnx(path: Path) -> None:
    """Refuse an ONNX file that could make onnxruntime read more than the file itself.

    ONNX is data, not code, and onnxruntime runs only the operators it ships. What a crafted
    file can still do is point a tensor at "external data", a path of its choice that the
    runtime then reads (`../../.ssh/id_rsa`), or ask for operator domains that only a custom
    library provides. This project's exports embed every tensor and use the standard domains,
    so anything else is refused with one line.
    """
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError types
        raise UserError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from None
    domains = {opset.domain for opset in model.opset_import} - ONNX_DOMAINS
    if domains:
        raise UserError(
            f"{path}: refusing an ONNX model with operator domains this project never "
            f"exports: {', '.join(sorted(domains))} (valid: ai.onnx, ai.onnx.ml)"
        )
    external = [t.name for t in _tensors(model.graph) if t.data_location == t.EXTERNAL]
    if external:
        raise UserError(
            f"{path}: refusing an ONNX model whose tensors point at external files "
            f"({', '.join(external[:3])}); this project's exports embed every tensor"
        )


def _tensors(graph):
    """Every tensor of an ONNX graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    yield from (sparse.values for sparse in graph.sparse_initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)
