"""Loading files that may come from someone else: crafted skops, ONNX and checkpoint files.

Model files arrive through `dvc pull`, `dvc exp pull` and `dvc exp apply`. Each crafted file
below must be refused with one line naming it, before anything inside it runs: the payloads
would create a marker file, and the tests check it never appears.
"""

from __future__ import annotations

import importlib
import json
import sys
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ml_project.errors import UserError
from ml_project.models import MODELS
from ml_project.persistence import (
    ONNX_DOMAINS,
    allowed_types,
    check_onnx,
    load_native,
    save_native,
    trusted_types,
)
from tests.helpers.data import messy_frame
from tests.helpers.models import fitted
from tests.helpers.project import ROOT, make_project, sh


def _json(value) -> dict:
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
    }


def _tuple(*items) -> dict:
    return {
        "__class__": "tuple",
        "__module__": "builtins",
        "__loader__": "TupleNode",
        "content": list(items),
    }


def _reduce(qualname: str, *args) -> dict:
    """skops' ConstructorFromReduceNode: loading calls `qualname(*args)`."""
    module, name = qualname.rsplit(".", 1)
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": _tuple(*args),
    }


def _object(qualname: str) -> dict:
    module, name = qualname.rsplit(".", 1)
    return {"__class__": name, "__module__": module, "__loader__": "ObjectNode"}


def _payloads(marker) -> dict[str, dict]:
    touch = f"open({str(marker)!r}, 'w').write('pwned')"
    return {
        "builtins.exec": _reduce("builtins.exec", _json(touch)),
        "builtins.eval": _reduce("builtins.eval", _json(touch)),
        "os.system": _reduce("os.system", _json(f"touch {marker}")),
        "subprocess.Popen": _reduce("subprocess.Popen", _json(["touch", str(marker)])),
        # a code runner inside a package the old rule trusted whole
        "numpy.testing._private.utils.runstring": _reduce(
            "numpy.testing._private.utils.runstring", _json(touch), _json({})
        ),
        # getattr chains: builtins.getattr, an operator.attrgetter and a bound method
        "builtins.getattr": _reduce(
            "builtins.getattr", _object("sklearn.pipeline.Pipeline"), _json("__init__")
        ),
        "operator.attrgetter": {
            "__class__": "attrgetter",
            "__module__": "operator",
            "__loader__": "OperatorFuncNode",
            "attrs": _tuple(_json("__class__.__init__.__globals__")),
        },
        "sklearn.pipeline.Pipeline.__init__": {
            "__class__": "Pipeline",
            "__module__": "sklearn.pipeline",
            "__loader__": "MethodNode",
            "content": {"obj": _object("sklearn.pipeline.Pipeline"), "func": "__init__"},
        },
        # a type from an allowed package that is not part of any model
        "ml_project.atomic.atomic_dir": _reduce("ml_project.atomic.atomic_dir", _json("x")),
    }


def _write_skops(path, schema: dict) -> None:
    schema = {**schema, "protocol": 2, "_skops_version": "0.16.0"}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))


def _small_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from ml_project.models.preprocessing import CastFloat32

    frame = messy_frame(60)
    X, y = frame[["age", "income"]].fillna(0), frame["churn"]
    return make_pipeline(CastFloat32(), LogisticRegression()).fit(X, y)


PAYLOAD_NAMES = list(_payloads("m"))


@pytest.mark.parametrize("payload", PAYLOAD_NAMES)
def test_a_crafted_model_file_is_refused_and_runs_nothing(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.skops"
    _write_skops(path, _payloads(marker)[payload])
    with pytest.raises(UserError) as refused:
        load_native(path)
    message = str(refused.value)
    assert "\n" not in message
    assert str(path) in message and payload in message
    assert not marker.exists()


def test_a_payload_hidden_inside_a_real_pipeline_is_refused(tmp_path):
    """A teammate's real model with one leaf swapped for a payload."""
    marker = tmp_path / "pwned"
    path = save_native(_small_pipeline(), tmp_path / "model.skops")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(members["schema.json"])
    schema["content"]["content"]["verbose"] = _payloads(marker)["builtins.exec"]
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(UserError, match="builtins.exec"):
        load_native(path)
    assert not marker.exists()


def test_a_file_that_is_not_a_skops_archive_gets_one_line(tmp_path):
    path = tmp_path / "model.skops"
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle, not a skops zip
    with pytest.raises(UserError, match="not a readable skops model file") as refused:
        load_native(path)
    assert "\n" not in str(refused.value)


def test_the_allow_list_holds_exact_class_names_only():
    """No prefixes, no builtins, no functions or methods: each name imports as a class."""
    for name in allowed_types():
        module, attr = name.rsplit(".", 1)
        assert not module.startswith(("builtins", "os", "subprocess", "operator"))
        assert isinstance(getattr(importlib.import_module(module), attr), type), name


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model_saves_only_allowed_types(tmp_path, name):
    """The allow-list comes from the registry; a model whose file holds a type its spec does
    not declare fails here, not at a user's `dvc exp apply`."""
    for task in ("classification", "regression"):
        pipe, X, _, _ = fitted(name, task)
        path = save_native(pipe, tmp_path / f"{task}.skops")
        assert set(trusted_types(path)) <= allowed_types()
        load_native(path).predict(X)


def test_a_fold_ensemble_saves_only_allowed_types(tmp_path):
    from ml_project.models.ensembles import FoldEnsemble

    folds = FoldEnsemble([_small_pipeline(), _small_pipeline()], task="classification")
    path = save_native(folds, tmp_path / "m.skops")
    assert set(trusted_types(path)) <= allowed_types()
    assert "ml_project.models.ensembles.FoldEnsemble" in trusted_types(path)


# --- ONNX --------------------------------------------------------------------------------
def _onnx_model(tensor: TensorProto, domain: str = "") -> onnx.ModelProto:
    node = helper.make_node("Add", ["x", tensor.name], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[tensor],
    )
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=opsets)


def _external_tensor(location: str) -> TensorProto:
    """A weight whose bytes the runtime would read from `location`."""
    tensor = helper.make_tensor("w", TensorProto.FLOAT, [1], np.float32(0).tobytes(), raw=True)
    onnx.external_data_helper.set_external_data(tensor, location=location)
    tensor.ClearField("raw_data")
    return tensor


def test_an_onnx_model_pointing_at_a_file_outside_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.float32(7).tobytes())
    tensor = _external_tensor(str(secret))
    path = tmp_path / "model.onnx"
    path.write_bytes(_onnx_model(tensor).SerializeToString())
    with pytest.raises(UserError, match="external files") as refused:
        check_onnx(path)
    assert str(path) in str(refused.value)


def test_an_onnx_model_with_a_custom_operator_domain_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    tensor = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    path.write_bytes(_onnx_model(tensor, domain="com.evil").SerializeToString())
    with pytest.raises(UserError, match="com.evil"):
        check_onnx(path)


def test_a_plain_onnx_model_passes_and_garbage_gets_one_line(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(
        _onnx_model(helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])).SerializeToString()
    )
    check_onnx(path)
    path.write_bytes(b"not a protobuf at all" * 3)
    with pytest.raises(UserError, match="not a valid ONNX model"):
        check_onnx(path)


def test_every_registered_model_exports_within_the_onnx_domains(tmp_path):
    from ml_project.export import signature, to_onnx

    for name in MODELS:
        pipe, _, _, manifest = fitted(name, "classification")
        model = to_onnx(pipe, signature(manifest, list(pipe.classes_)))
        assert {o.domain for o in model.opset_import} <= ONNX_DOMAINS, name
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        check_onnx(path)


# --- the checkpoint --------------------------------------------------------------------------
def test_the_checkpoint_loader_refuses_pickled_code(tmp_path):
    """`torch.load(weights_only=True)`: a checkpoint holding a pickled callable is refused."""
    torch = pytest.importorskip("torch")
    import os

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "train.pt"
    torch.save({"epoch": 1, "x": Payload()}, path)
    source = (ROOT / "src/ml_project/models/torch_checkpoint.py").read_text()
    assert "weights_only=True" in source and "weights_only=False" not in source
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        torch.load(path, weights_only=True)
    assert not marker.exists()


# --- through a real stage --------------------------------------------------------------------
@pytest.mark.slow
def test_the_evaluate_stage_refuses_a_crafted_model_with_one_line(tmp_path):
    repo = make_project(tmp_path / "repo")
    marker = tmp_path / "pwned"
    sh("python stages/etl.py", repo)
    (repo / "models").mkdir()
    _write_skops(repo / "models/model.skops", _payloads(marker)["builtins.exec"])
    for stage in ("evaluate", "export"):
        proc = sh(f"python stages/{stage}.py", repo, check=False)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "builtins.exec" in lines[0], proc.stderr
        assert not marker.exists()


def test_predict_refuses_a_crafted_onnx_file_with_one_line(tmp_path):
    tensor = _external_tensor("/etc/passwd")
    model = tmp_path / "model.onnx"
    model.write_bytes(_onnx_model(tensor).SerializeToString())
    rows = tmp_path / "rows.csv"
    rows.write_text("a\n1\n")
    proc = sh(f"python -m ml_project.predict {rows} --model {model}", tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "external files" in proc.stderr
    assert proc.stderr.startswith("error: --model: ")


def test_reading_the_schema_builds_nothing(tmp_path):
    """The audit itself must not import modules named in the file (only their names)."""
    path = tmp_path / "model.skops"
    _write_skops(path, _reduce("antigravity.geohash", _json(1)))
    with pytest.raises(UserError, match="antigravity"):
        trusted_types(path)
    assert "antigravity" not in sys.modules
