"""The spec decides, nobody else guesses: the services never inspect a model's type or
modules, and the torch modules import one way only (no cycle with the registry)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.helpers.project import ROOT

SRC = ROOT / "src/ml_project"
SERVICES = ["training.py", "fitting.py", "cv.py", "evaluation.py", "export.py"]


@pytest.mark.parametrize("module", SERVICES)
def test_services_ask_the_spec_instead_of_inspecting_models(module):
    source = (SRC / module).read_text()
    for probe in ("hasattr(", "sys.modules", "inference_module", "predict_proba", "per_epoch"):
        if module == "fitting.py" and probe == "per_epoch":
            continue  # fitting reads the spec's flag to choose how to log the curve
        assert probe not in source, f"{module} uses {probe}"


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


@pytest.mark.parametrize(
    "module",
    ["torch_estimator", "torch_loop", "torch_checkpoint", "torch_dist", "nets", "torch_params"],
)
def test_the_torch_estimator_side_never_imports_the_registry(module):
    imported = _imports(SRC / "models" / f"{module}.py")
    assert not any("torch_models" in name for name in imported), module


def test_the_registry_loads_without_torch():
    code = "import sys, ml_project.models; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
