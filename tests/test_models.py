"""Contract tests over the MODELS registry: fit on tiny data, shapes, round trips, ONNX parity."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from ml_project.export import compare, native_outputs, onnx_feeds, onnx_outputs, signature, to_onnx
from ml_project.models import MODELS, get_spec
from ml_project.params import ExportParams
from ml_project.persistence import load_native, save_native
from tests.helpers.models import fitted

CASES = [(name, task) for name in MODELS for task in ("classification", "regression")]


@pytest.mark.parametrize(("name", "task"), CASES)
def test_fit_predict_shapes(name, task):
    pipe, X, y, _ = fitted(name, task)
    assert pipe.predict(X).shape == (len(X),)
    if task == "classification":
        proba = pipe.predict_proba(X)
        assert proba.shape == (len(X), 2)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
        assert set(pipe.predict(X)) <= {"yes", "no"}


@pytest.mark.parametrize(("name", "task"), CASES)
def test_skops_round_trip(tmp_path, name, task):
    pipe, X, _, _ = fitted(name, task)
    loaded = load_native(save_native(pipe, tmp_path / "m.skops"))
    np.testing.assert_array_equal(native_outputs(loaded, X, task), native_outputs(pipe, X, task))


@pytest.mark.parametrize(("name", "task"), CASES)
def test_onnx_export_matches_native(name, task):
    pipe, X, _, manifest = fitted(name, task)
    sig = signature(manifest, getattr(pipe, "classes_", None))
    onx = to_onnx(pipe, sig)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, values = onnx_outputs(session, onnx_feeds(session, X, sig), task)
    parity = compare("onnx", native_outputs(pipe, X, task), values, ExportParams())
    assert parity.max_abs_diff <= 1e-4 * max(1.0, float(np.abs(values).max()))
    if task == "classification":
        assert np.mean(labels == pipe.predict(X)) >= 0.99


@pytest.mark.parametrize("name", [n for n, s in MODELS.items() if s.staged])
def test_staged_models_end_at_the_final_prediction(name):
    pipe, X, _, _ = fitted(name, "classification")
    Xt = pipe[:-1].transform(X)
    stages = list(get_spec(name).staged(pipe[-1], Xt))
    assert len(stages) > 1
    np.testing.assert_allclose(stages[-1], pipe.predict_proba(X), atol=1e-12)


def test_untrusted_types_are_refused(tmp_path):
    import skops.io as sio

    from ml_project.errors import UserError

    class Sneaky:
        pass

    path = tmp_path / "bad.skops"
    sio.dump({"x": Sneaky()}, path)
    with pytest.raises(
        UserError,
        match=r"refusing to load a model holding types this project never saves: .*Sneaky",
    ):
        load_native(path)


@pytest.mark.parametrize("seed", [42, 48, 49])
def test_hgb_onnx_parity_is_exact_in_float32(tmp_path, seed):
    """Seeds 42/48/49 put a diabetes value exactly on a float32-rounded threshold."""
    import yaml

    from ml_project.data import load_split, run_etl
    from ml_project.params import DataParams
    from ml_project.training import fit, load_train_config

    manifest = run_etl(DataParams(source="diabetes", task="regression", seed=seed), tmp_path)
    raw = yaml.safe_load(open("params.yaml"))  # noqa: SIM115
    raw["data"].update(source="diabetes", task="regression", seed=seed)
    raw["train"]["metric"] = "rmse"
    pipe = fit(load_train_config(raw), manifest, data_dir=tmp_path).pipeline
    X, _ = load_split("train", manifest, tmp_path)
    sig = signature(manifest, None)
    session = ort.InferenceSession(to_onnx(pipe, sig).SerializeToString())
    _, values = onnx_outputs(session, onnx_feeds(session, X, sig), "regression")
    compare("onnx", native_outputs(pipe, X, "regression"), values, ExportParams())


def test_failed_parity_leaves_no_export_behind(tmp_path):
    """With a zero tolerance the float32 ONNX model cannot pass: nothing may be written."""
    import yaml

    from ml_project import export
    from ml_project.data import run_etl
    from ml_project.errors import UserError
    from ml_project.params import DataParams
    from ml_project.training import fit, load_train_config

    manifest = run_etl(DataParams(), tmp_path / "data")
    raw = yaml.safe_load(open("params.yaml"))  # noqa: SIM115
    raw["model"] = "svm"
    raw["data"]["task"], raw["train"]["metric"] = "classification", "f1"  # as DataParams()
    pipe = fit(load_train_config(raw), manifest, data_dir=tmp_path / "data").pipeline
    model = save_native(pipe, tmp_path / "model.skops")
    out = tmp_path / "export"
    export.run(model, manifest, ExportParams(), tmp_path / "data", out)
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert set(before) == {
        "model/model.onnx",
        "model/model.skops",
        "model/signature.json",
        "model/skipped.json",  # TorchScript: why it does not apply
        "parity.json",
    }

    with pytest.raises(
        UserError, match=r"export.onnx: parity check failed: max abs diff .* exceeds atol=0"
    ):
        export.run(model, manifest, ExportParams(atol=0, rtol=0), tmp_path / "data", out)
    assert {
        str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()
    } == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "export", "model.skops"]
