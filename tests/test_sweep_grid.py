"""The sweep's pure parts, without DVC: presets, -S flags, key checks, expansion, names, and
the DVC version check of the queue adapter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ml_project.errors import UserError
from ml_project.params import read_params
from ml_project.sweeps import (
    check_keys,
    expand,
    failure_reason,
    grids_for,
    load_presets,
    next_names,
    override,
    parse_set_flags,
)
from ml_project.sweeps.dvc_queue import WRITTEN_FOR, check_version
from ml_project.sweeps.names import prefixed_names
from tests.helpers.project import ROOT

PARAMS = read_params(ROOT / "params.yaml")


def test_every_preset_expands_against_params_yaml():
    params = read_params(ROOT / "params.yaml")
    presets = load_presets(ROOT)
    assert {"smoke", "models", "hgb-lr", "torch"} <= set(presets)
    assert "searches" not in presets  # the Optuna search spaces beside them are not grids
    sizes = {name: len(expand(p.grids, params, name)[0]) for name, p in presets.items()}
    assert sizes["smoke"] == 2 and sizes["hgb-lr"] == 6 and sizes["torch"] == 9
    assert sizes["models"] == len(params["models"])


def test_grid_points_of_untrained_models_run_once():
    # The README's grid: rf and mlp ignore models.hgb.*, so they run once each, not twice.
    grid = parse_set_flags(["model=rf,hgb,mlp", "models.hgb.learning_rate=0.05,0.1"])
    points, dropped = expand([grid], read_params(ROOT / "params.yaml"), "-S")
    assert dropped == 2
    assert points == [
        {"model": "rf", "models.hgb.learning_rate": 0.05},
        {"model": "hgb", "models.hgb.learning_rate": 0.05},
        {"model": "hgb", "models.hgb.learning_rate": 0.1},
        {"model": "mlp", "models.hgb.learning_rate": 0.05},
    ]


def test_set_flags_keep_lists_and_quoted_commas_whole():
    grid = parse_set_flags(["models.mlp.hidden_sizes=[64],[128, 64]", "data.source='a,b.csv',x"])
    assert grid == {"models.mlp.hidden_sizes": [[64], [128, 64]], "data.source": ["a,b.csv", "x"]}


def test_next_free_names_follow_the_highest_number():
    assert next_names({"t1", "t9", "foo", "t3x", "t-4"}, 3) == ["t10", "t11", "t12"]
    assert next_names(set(), 2) == ["t1", "t2"]


def test_the_grid_logic_imports_no_dvc():
    code = (
        "import sys\n"
        "from ml_project.sweeps import expand, load_presets, next_names, parse_set_flags\n"
        "print(sorted(m for m in ('dvc', 'pandas', 'torch', 'sklearn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_preset_with_extra_flags_replaces_its_keys_and_counts_its_points():
    presets = load_presets(ROOT)
    assert presets["hgb-lr"].size == 6
    grids, where = grids_for("smoke", {"models.linear.alpha": [3.0]}, presets)
    assert where == "sweeps.yaml: smoke"
    assert all(g["models.linear.alpha"] == [3.0] for g in grids)
    assert grids_for(None, {"model": ("rf", "hgb")}, presets) == ([{"model": ["rf", "hgb"]}], "-S")


@pytest.mark.parametrize(
    ("preset", "params", "message"),
    [
        ("nope", None, r"^unknown preset 'nope' \(valid: smoke, models, hgb-lr, torch\)$"),
        (None, None, r"^nothing to sweep: name a preset or give -S key=value"),
        (None, {"model": []}, r"^-S: model: no values to sweep$"),
    ],
)
def test_grids_for_rejects_what_cannot_run(preset, params, message):
    with pytest.raises(UserError, match=message):
        grids_for(preset, params, load_presets(ROOT))


def test_a_key_not_in_params_yaml_lists_its_siblings():
    check_keys({"models.hgb.learning_rate": [0.1]}, PARAMS, "-S")
    with pytest.raises(UserError) as error:
        check_keys({"train.metrc": ["f1"]}, PARAMS, "-S")
    assert str(error.value).startswith(
        "-S: train.metrc: not a param in params.yaml (valid keys under train: "
    )
    assert "metric" in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("smoke: [1]\n", "sweeps.yaml: smoke: needs a 'grid'"),
        ("smoke:\n  grid: {model: [rf]}\n  runs: 2\n", "unknown key 'runs'"),
        ("smoke:\n  grid: [3]\n", "smoke: grid: a grid is a mapping"),
        ("- a\n", "expected a mapping of preset names"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_a_broken_presets_file_is_one_line(tmp_path, text, message):
    (tmp_path / "sweeps.yaml").write_text(text)
    with pytest.raises(UserError, match=message):
        load_presets(tmp_path)


def test_overrides_quote_only_what_hydra_needs_quoted():
    assert override("model", "rf") == "model=rf"
    assert override("data.source", "data/raw/a b.csv") == "data.source='data/raw/a b.csv'"
    assert override("models.mlp.hidden_sizes", [64, 32]) == "models.mlp.hidden_sizes=[64, 32]"
    assert override("models.rf.max_depth", None) == "models.rf.max_depth=null"


def test_a_name_prefix_numbers_its_experiments_and_refuses_a_taken_name():
    assert prefixed_names("lr", 1, set()) == ["lr"]
    assert prefixed_names("lr", 3, {"t1"}) == ["lr-1", "lr-2", "lr-3"]
    with pytest.raises(UserError, match="experiment 'lr-2' already exists"):
        prefixed_names("lr", 2, {"lr-2"})


def test_the_queue_adapter_accepts_only_the_dvc_it_was_written_for():
    wanted = ".".join(map(str, WRITTEN_FOR))
    check_version(f"{wanted}.0")
    check_version(f"{wanted}.9")
    for other in ("3.66.1", "3.68.0", "4.0.0"):
        with pytest.raises(UserError) as error:
            check_version(other)
        message = str(error.value)
        assert "\n" not in message
        assert f"DVC {wanted}.x internals, but dvc {other} is installed" in message
    check_version()  # the installed one (requirements.lock pins it)


def test_a_failure_is_retried_only_when_its_log_does_not_blame_the_input():
    user = "Running stage 'train':\nerror: params.yaml: models.linear.alpha: must be > 0\n"
    user += "ERROR: failed to reproduce 'train': exited with 2\n"
    assert failure_reason(user) == ("error: params.yaml: models.linear.alpha: must be > 0", False)
    killed = "Running stage 'train':\nERROR: failed to reproduce 'train': killed\nbye\n"
    assert failure_reason(killed) == ("ERROR: failed to reproduce 'train': killed", True)
    assert failure_reason("starting\nKeyboardInterrupt\n\n") == ("KeyboardInterrupt", True)
    assert failure_reason("") == ("failed without a log (the task never started)", True)
