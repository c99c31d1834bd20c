"""Export the fitted pipeline: a safe native copy (skops), ONNX and, for torch models,
TorchScript, each with a parity check.

EXPORTERS maps a format name (`export.formats` in params.yaml) to a writer. Each writer
converts, reloads what it wrote, compares predictions with the native pipeline on the test
split and fails above the tolerance. Models go to `export/model/`, the report to
`export/parity.json`. A format that does not apply to the model (TorchScript for a
scikit-learn model) is skipped, with the reason in `export/model/skipped.json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml_project.atomic import atomic_dir
from ml_project.data import PROCESSED_DIR, Manifest, load_split
from ml_project.errors import UserError
from ml_project.models import ModelSpec, spec_of
from ml_project.models.ensembles import folds_of
from ml_project.params import ExportParams
from ml_project.persistence import load_native, save_native

EXPORT_DIR = Path("export")
MODEL_SUBDIR = "model"
SIGNATURE_KEY = "ml_project.signature"
ONNX_OPSET = {"": 18, "ai.onnx.ml": 3}


class ParityError(UserError):
    """An exported model disagrees with the native one beyond the tolerance."""


@dataclass(frozen=True)
class Parity:
    format: str
    max_abs_diff: float
    max_rel_diff: float
    atol: float
    rtol: float
    label_agreement: float | None
    skipped: str | None = None


@dataclass(frozen=True)
class Native:
    """The native pipeline's outputs on the test split, which every export must reproduce."""

    spec: ModelSpec
    labels: np.ndarray  # predictions (class labels for a classifier)
    values: np.ndarray  # what parity compares (see `native_outputs`)


def native(pipeline, X: pd.DataFrame, task: str) -> Native:
    spec = spec_of(pipeline)
    pred, proba = spec.outputs(pipeline, X)
    if proba is not None:
        values = proba
    elif task == "classification":
        values = np.searchsorted(pipeline.classes_, pred).astype(np.float64)
    else:
        values = np.asarray(pred, dtype=np.float64)
    return Native(spec, pred, values)


def native_outputs(pipeline, X: pd.DataFrame, task: str) -> np.ndarray:
    """What parity compares: class probabilities, regression predictions, or for a
    classifier without probabilities (hard voting) the index of each predicted class."""
    return native(pipeline, X, task).values


def compare(
    fmt: str,
    native: np.ndarray,
    exported: np.ndarray,
    params: ExportParams,
    labels: tuple[np.ndarray, np.ndarray] | None = None,
) -> Parity:
    native = np.asarray(native, dtype=np.float64).reshape(len(native), -1)
    exported = np.asarray(exported, dtype=np.float64).reshape(native.shape)
    diff = np.abs(native - exported)
    within = diff <= params.atol + params.rtol * np.abs(native)
    rel = diff / np.maximum(np.abs(native), np.finfo(np.float64).tiny)
    agreement = None if labels is None else float(np.mean(labels[0] == labels[1]))
    parity = Parity(
        fmt,
        float(diff.max(initial=0.0)),
        float(rel.max(initial=0.0)),
        params.atol,
        params.rtol,
        agreement,
    )
    if not bool(within.all()):
        raise ParityError(
            f"export.{fmt}: parity check failed: max abs diff {parity.max_abs_diff:.3g} exceeds "
            f"atol={params.atol:g} + rtol={params.rtol:g}*|native| on {int((~within).sum())} "
            f"value(s); raise export.atol/export.rtol only if this is expected"
        )
    return parity


# --- ONNX ---------------------------------------------------------------------------------------
def signature(manifest: Manifest, classes) -> dict:
    return {
        "task": manifest.task,
        "target": manifest.target,
        "features": [{"name": f.name, "kind": f.kind} for f in manifest.features],
        "classes": None if classes is None else np.asarray(classes).tolist(),  # plain Python
        "data_version": manifest.data_version,
    }


def to_onnx(pipeline, sig: dict):
    """Convert with one ONNX input per raw column (float for numbers, string for categories).

    `sig` (see `signature`) is stored in the model's metadata, so predict needs nothing else.
    The model's spec registers the converters its own estimators need.
    """
    from skl2onnx import convert_sklearn

    from ml_project.models.preprocessing import register_onnx_converters

    folds = folds_of(pipeline)
    if folds is not None:  # train.cv_final: ensemble: the K fold models, averaged
        return _embed_signature(_average([to_onnx(p, sig) for p in folds], sig), sig)
    register_onnx_converters()
    spec = spec_of(pipeline)
    if spec.onnx_converters is not None:
        spec.onnx_converters(pipeline[-1])
    options = None
    if sig["task"] == "classification":
        options = {id(pipeline[-1]): {"zipmap": False}}
    onx = convert_sklearn(
        pipeline, initial_types=_initial_types(sig), options=options, target_opset=ONNX_OPSET
    )
    return _embed_signature(onx, sig)


def _initial_types(sig: dict) -> list:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [
        (
            f["name"],
            FloatTensorType([None, 1]) if f["kind"] == "numeric" else StringTensorType([None, 1]),
        )
        for f in sig["features"]
    ]


def _average(models: list, sig: dict):
    """One graph running every model on the same inputs and averaging their probabilities
    (then ArgMax over the classes for the label) or predictions."""
    import onnx
    from onnx import compose, helper, numpy_helper

    nodes, initializers, outputs = [], [], []
    for k, model in enumerate(models, start=1):
        model = compose.add_prefix(model, f"fold{k}/", rename_inputs=False)
        nodes += model.graph.node
        initializers += model.graph.initializer
        outputs.append([o.name for o in model.graph.output])
    classification = sig["task"] == "classification"
    parts = [names[1] if classification else names[0] for names in outputs]
    initializers.append(numpy_helper.from_array(np.array([len(models)], np.float32), "folds/k"))
    nodes += [
        helper.make_node("Sum", parts, ["folds/sum"]),
        helper.make_node(
            "Div", ["folds/sum", "folds/k"], ["probabilities" if classification else "variable"]
        ),
    ]
    first = models[0].graph
    if classification:
        label = next(o for o in first.output if o.name == "label")
        classes = np.asarray(sig["classes"])
        const = classes.astype(object) if classes.dtype.kind in "OUS" else classes.astype(np.int64)
        initializers.append(numpy_helper.from_array(const, "folds/classes"))
        nodes += [
            helper.make_node("ArgMax", ["probabilities"], ["folds/index"], axis=1, keepdims=0),
            helper.make_node("Gather", ["folds/classes", "folds/index"], ["label"], axis=0),
        ]
        outs = [label, next(o for o in first.output if o.name == "probabilities")]
    else:
        outs = [next(o for o in first.output if o.name == "variable")]
    graph = helper.make_graph(nodes, "fold_ensemble", list(first.input), outs, initializers)
    merged = helper.make_model(graph, opset_imports=list(models[0].opset_import))
    merged.ir_version = models[0].ir_version
    onnx.checker.check_model(merged)
    return merged


def _embed_signature(onx, sig: dict):
    entry = onx.metadata_props.add()
    entry.key = SIGNATURE_KEY
    entry.value = json.dumps(sig)
    return onx


def onnx_feeds(session, frame: pd.DataFrame, sig: dict) -> dict[str, np.ndarray]:
    """Map coerced feature columns onto the session's inputs, in signature order."""
    feeds = {}
    for inp, feat in zip(session.get_inputs(), sig["features"], strict=True):
        col = frame[feat["name"]].to_numpy()
        dtype = np.float32 if feat["kind"] == "numeric" else object
        feeds[inp.name] = col.astype(dtype).reshape(-1, 1)
    return feeds


def onnx_outputs(session, feeds, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels or predictions, probabilities or predictions) from an ONNX session."""
    out = session.run(None, feeds)
    if task == "classification":
        return out[0].ravel(), out[1]
    return out[0].ravel(), out[0].ravel()


def export_onnx(pipeline, sig: dict, X_test, native: Native, staging: Path, params) -> Parity:
    import onnxruntime as ort

    path = staging / "model.onnx"
    path.write_bytes(to_onnx(pipeline, sig).SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, values = onnx_outputs(session, onnx_feeds(session, X_test, sig), sig["task"])
    classification = sig["task"] == "classification"
    if classification and native.values.ndim == 1:  # labels only: compare class indices
        values = np.searchsorted(np.asarray(sig["classes"]), labels).astype(np.float64)
    pair = (native.labels, labels) if classification else None
    return compare("onnx", native.values, values, params, pair)


def export_torchscript(pipeline, sig, X_test, native: Native, staging: Path, params) -> Parity:
    """The network and its output head, traced; its input is the *preprocessed* features.

    Parity is against the eager module on the preprocessed test split. To serve raw columns,
    use the ONNX file, which carries the preprocessing too.
    """
    if native.spec.torchscript is None or folds_of(pipeline) is not None:
        what = "K averaged fold models" if folds_of(pipeline) is not None else "this model"
        return Parity(
            "torchscript",
            0.0,
            0.0,
            params.atol,
            params.rtol,
            None,
            skipped=f"not available for {what} (models.{native.spec.name})",
        )
    import torch

    features = np.asarray(pipeline[:-1].transform(X_test), dtype=np.float32)
    module = native.spec.torchscript(pipeline[-1])
    example = torch.from_numpy(features)
    with torch.no_grad():
        eager = module(example).double().numpy()
        traced = torch.jit.trace(module, example[:2], check_trace=False)
    path = staging / "model.torchscript.pt"
    torch.jit.save(traced, str(path))
    with torch.no_grad():
        reloaded = torch.jit.load(str(path))(example).double().numpy()
    return compare("torchscript", eager, reloaded, params)


# format -> writer(pipeline, signature, X_test, Native, staging dir, params) -> Parity
EXPORTERS: dict[str, Callable[..., Parity]] = {
    "onnx": export_onnx,
    "torchscript": export_torchscript,
}


def run(
    model_path: Path,
    manifest: Manifest,
    params: ExportParams,
    data_dir: Path = PROCESSED_DIR,
    out_dir: Path = EXPORT_DIR,
) -> list[Parity]:
    """Write `model.skops` and every format in `params.formats` to `out_dir/model/`, and the
    parity report to `out_dir/parity.json`.

    All files are written to a staging directory and moved in place only when every parity
    check passed: a failed export leaves no model that looks valid.
    """
    pipeline = load_native(model_path)
    X_test, _ = load_split("test", manifest, data_dir)
    sig = signature(manifest, getattr(pipeline, "classes_", None))
    outputs = native(pipeline, X_test, manifest.task)
    with atomic_dir(out_dir) as staging:
        models = staging / MODEL_SUBDIR
        models.mkdir()
        save_native(pipeline, models / "model.skops")
        reloaded = native_outputs(load_native(models / "model.skops"), X_test, manifest.task)
        results = [compare("skops", outputs.values, reloaded, params)]
        results += [
            EXPORTERS[fmt](pipeline, sig, X_test, outputs, models, params) for fmt in params.formats
        ]
        # parity.json is a DVC metrics file: numbers only, so `dvc exp show` gets no column
        # of prose. Why a format was skipped goes beside the models instead.
        report = {
            r.format: {k: v for k, v in asdict(r).items() if k not in ("format", "skipped")}
            for r in results
            if not r.skipped
        }
        skipped = {r.format: r.skipped for r in results if r.skipped}
        (staging / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
        if skipped:
            (models / "skipped.json").write_text(json.dumps(skipped, indent=2) + "\n")
        (models / "signature.json").write_text(json.dumps(sig, indent=2) + "\n")
    return results
