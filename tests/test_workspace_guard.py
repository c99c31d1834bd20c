"""One workspace, one experiment at a time: a stage notices params.yaml rewritten under it.

`dvc exp run -S` writes params.yaml before it takes the repository lock, so a second run in
the same workspace rewrites the first run's params and then fails on the lock.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

import psutil
import pytest
import yaml

from ml_project.errors import ParamsError, exits_on_user_error
from ml_project.params import check_upstream_params, read_params
from tests.helpers.project import make_project, project_env, sh


def test_a_stage_fails_with_one_line_when_params_change_while_it_runs(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  seed: 1\n")

    @exits_on_user_error
    def stage():
        read_params(params)
        params.write_text("data:\n  seed: 2\n")  # what a second `dvc exp run -S` does

    with pytest.raises(SystemExit) as exited:
        stage()
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "params.yaml: changed while this stage ran" in err and "--queue" in err


def test_an_unchanged_params_file_passes_and_checks_do_not_leak_between_calls(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  seed: 1\n")

    @exits_on_user_error
    def stage():
        return read_params(params)["data"]["seed"]

    assert stage() == 1
    params.write_text("data:\n  seed: 3\n")  # between two stages: not this stage's concern
    assert stage() == 3


def test_a_stage_refuses_params_that_differ_from_what_earlier_stages_ran_with(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "etl": {"params": {"params.yaml": {"data.seed": 42, "data.target": None}}},
                    "train": {"params": {"params.yaml": {"models.hgb": {"max_iter": 100}}}},
                },
            }
        )
    )
    now = {"data": {"seed": 42, "target": None}, "models": {"hgb": {"max_iter": 5}}}
    check_upstream_params("train", now, lock)  # train's own lock entry is not compared
    check_upstream_params("etl", now, lock)
    with pytest.raises(ParamsError, match=r"models.hgb is .* stage 'train' ran with"):
        check_upstream_params("evaluate", now, lock)
    now["data"]["seed"] = 7
    with pytest.raises(ParamsError, match=r"data.seed is 7, but stage 'etl' ran with 42"):
        check_upstream_params("train", now, lock)
    check_upstream_params("train", now, tmp_path / "missing.lock")  # first run: nothing locked


@pytest.mark.slow
def test_a_second_exp_run_in_the_same_workspace_fails_the_first_instead_of_mixing_params(
    tmp_path,
):
    repo = make_project(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["tracking"]["mlflow"]["enabled"] = params["tracking"]["wandb"]["enabled"] = False
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git commit -qam 'trackers off'", repo)
    first = subprocess.Popen(
        "dvc exp run -S model=mlp -S models.mlp.max_epochs=300 -S models.mlp.patience=0",
        shell=True, cwd=repo, env=project_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output = []
    for line in first.stdout:
        output.append(line)
        if "Running stage 'train'" in line:
            break
    else:
        pytest.fail("the first run never reached train:\n" + "".join(output))
    # The train stage has read its params once it has written a checkpoint (after epoch 1).
    deadline = time.monotonic() + 300
    while not (repo / "checkpoints" / "train.pt").exists():
        assert first.poll() is None and time.monotonic() < deadline, "train never checkpointed"
        time.sleep(0.1)
    # Paused while the second run rewrites params.yaml: the first is certainly still training
    # then, however slow the machine, and trains only a few seconds after.
    training = _train_processes(repo)
    assert training, "the first run's train stage ended before it could be paused"
    for proc in training:
        proc.suspend()
    try:
        second = sh("dvc exp run -S models.mlp.lr=0.01", repo, check=False)
    finally:
        for proc in training:
            proc.resume()
    assert second.returncode != 0  # DVC's lock
    assert "lr: 0.01" in (repo / "params.yaml").read_text()  # ... taken after the rewrite
    output.append(first.stdout.read())
    assert first.wait(timeout=600) != 0, "".join(output)
    text = "".join(output)
    assert "error: params.yaml: changed while this stage ran" in text, text
    assert sh("dvc exp list --name-only", repo).stdout.strip() == ""  # nothing recorded


def _train_processes(repo) -> list[psutil.Process]:
    """The train stage's processes working in `repo`: `python stages/train.py` and, when the
    fork server runs it, the server's child (a fork of a fork of the server: its parent and
    grandparent carry the server's command line too; the server itself does not work here)."""

    def served(proc: psutil.Process) -> bool:
        chain = [proc, *proc.parents()[:2]]
        return len(chain) == 3 and all("forkserver" in " ".join(p.cmdline()) for p in chain)

    where, found = os.path.realpath(repo), []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmd, cwd = " ".join(proc.info["cmdline"] or []), proc.info["cwd"]
        if not cwd or os.path.realpath(cwd) != where:
            continue
        with contextlib.suppress(psutil.Error):
            if "stages/train.py" in cmd or ("forkserver" in cmd and served(proc)):
                found.append(proc)
    return found
