"""From experiment to deployment, for real: promote a DVC experiment (MLflow Model Registry
version and alias, GTO git tag that `dvc artifacts get` fetches, versioned files), score with
the alias, and serve it with `mlflow models serve` on 127.0.0.1, for an sklearn and a torch
model, checked against `predict` on the ONNX export."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.project import project_env

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = {**project_env(), "PYTHONPATH": str(cwd / "src"), **kw.pop("env", {})}
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, **kw)
    if check:
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


def client(repo: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


@pytest.fixture(scope="module")
def repo(built, tmp_path_factory) -> Path:
    """A copy of the built project with two experiments: t5 (hgb) and t6 (a torch MLP)."""
    copy = tmp_path_factory.mktemp("promote") / "project"
    shutil.copytree(built, copy, symlinks=True)
    # The copy's MLflow store starts empty: the built project's experiment keeps artifacts
    # in the built project's folder (see the moved-store warning).
    (copy / "mlflow.db").unlink()
    shutil.rmtree(copy / "mlartifacts")
    for name, sets in (
        ("t5", ["-S", "models.hgb.max_iter=20"]),
        ("t6", ["-S", "model=mlp", "-S", "models.mlp.max_epochs=3"]),
    ):
        proc = run(["dvc", "exp", "run", "-n", name, *sets], copy)
        # Trackers are optional: a failed `log_model` is a warning line, not a failed stage.
        # Every test here needs the logged model, so the stages' own words are the message.
        output = (proc.stdout + proc.stderr).splitlines()
        warnings = [line for line in output if "warning" in line.lower()]
        mlflow = client(copy)
        experiment = mlflow.get_experiment_by_name("ml_project").experiment_id
        runs = mlflow.search_runs([experiment], filter_string=f"tags.`dvc.exp_name` = '{name}'")
        assert len(runs) == 1 and runs[0].outputs.model_outputs, (name, warnings)
    rows = pd.read_parquet(copy / "data/processed/test.parquet").drop(columns=["target"]).head(6)
    rows.to_csv(copy / "rows.csv", index=False)
    return copy


def onnx_proba(repo: Path, model: str) -> pd.DataFrame:
    out = run([sys.executable, "-m", "ml_project.predict", "rows.csv", "--model", model], repo)
    frame = pd.read_csv(pd.io.common.StringIO(out.stdout))
    return frame[[c for c in frame.columns if c.startswith("proba_")]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_score(repo: Path, uri: str, rows: pd.DataFrame) -> list:
    port = free_port()
    env = {**project_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}
    cmd = ["mlflow", "models", "serve", "-m", uri, "--env-manager", "local"]
    server = subprocess.Popen(
        [*cmd, "-h", "127.0.0.1", "-p", str(port)],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return json.loads(response.read())["predictions"]
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"server did not answer: {server.stderr.read()}") from None
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_promote_registers_tags_and_names_files_by_version(repo):
    proc = run([sys.executable, "-m", "ml_project.promote", "t5"], repo)
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("promoted t5: models:/ml_project@champion")
    )
    mlflow = client(repo)
    version = mlflow.get_model_version_by_alias("ml_project", "champion")
    assert int(version.version) == 1 and version.tags["dvc.exp_name"] == "t5"
    run_ = mlflow.get_run(version.run_id)
    assert run_.data.tags["dvc.exp_name"] == "t5"

    # DVC's model registry: the GTO tag on t5's commit, fetched by `dvc artifacts get`.
    t5 = run(["git", "rev-parse", "refs/exps/*/t5"], repo, check=False)
    tag = run(["git", "rev-list", "-n", "1", "ml_project@v1.0.0"], repo).stdout.strip()
    assert version.tags["dvc.rev"] == tag, t5.stdout
    run(["dvc", "artifacts", "get", ".", "ml_project", "--rev", "v1.0.0", "-o", "fetched"], repo)
    assert {p.name for p in (repo / "fetched").iterdir()} >= {"model.onnx", "model.skops"}

    # Versioned files; the DVC output paths stay as they are.
    releases = repo / "releases/ml_project"
    assert sorted(p.name for p in releases.iterdir()) == [
        "model_v1.onnx",
        "model_v1.skops",
        "signature_v1.json",
    ]
    assert (releases / "model_v1.onnx").read_bytes() == (repo / "fetched/model.onnx").read_bytes()
    assert (repo / "export/model/model.onnx").is_file()
    assert "releases" not in run(["git", "status", "--porcelain"], repo).stdout

    # A second promotion moves the alias.
    run([sys.executable, "-m", "ml_project.promote", "t6"], repo)
    assert int(mlflow.get_model_version_by_alias("ml_project", "champion").version) == 2
    assert (repo / "releases/ml_project/model_v2.onnx").is_file()


def test_an_unknown_experiment_is_one_line_and_changes_nothing(repo):
    tags = run(["git", "tag"], repo).stdout
    proc = run([sys.executable, "-m", "ml_project.promote", "t99"], repo, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith("error: experiment 't99': not found (valid: ")
    assert "t5" in proc.stderr and proc.stderr.count("\n") == 1
    assert run(["git", "tag"], repo).stdout == tags


def test_a_missing_mlflow_store_is_one_line_and_is_not_created(repo, tmp_path):
    store = tmp_path / "elsewhere.db"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    tags = run(["git", "tag"], repo).stdout
    proc = run([sys.executable, "-m", "ml_project.promote", "t5"], repo, check=False, env=env)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: experiment 't5': no MLflow store at {store} (was tracking.mlflow enabled?)"
    ]
    assert not store.exists()
    assert run(["git", "tag"], repo).stdout == tags


def test_an_experiment_without_onnx_parity_is_refused_and_changes_nothing(repo):
    # An export with no ONNX format: nothing proves a servable file matches the model.
    run(["dvc", "exp", "run", "-n", "t7", "-S", "export.formats=[torchscript]"], repo)
    tags, releases = run(["git", "tag"], repo).stdout, sorted((repo / "releases").rglob("*"))
    proc = run([sys.executable, "-m", "ml_project.promote", "t7"], repo, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: experiment 't7': its export parity did not pass")
    assert run(["git", "tag"], repo).stdout == tags
    assert sorted((repo / "releases").rglob("*")) == releases


@pytest.mark.parametrize("experiment", ["t5", "t6"])
def test_the_champion_serves_what_predict_gives_on_the_onnx_export(repo, experiment, monkeypatch):
    """`mlflow models serve -m models:/ml_project@champion --env-manager local` on 127.0.0.1:
    the served probabilities equal `predict`'s on the ONNX export (t5: hgb, t6: torch)."""
    run([sys.executable, "-m", "ml_project.promote", experiment], repo)
    mlflow = client(repo)
    version = mlflow.get_model_version_by_alias("ml_project", "champion")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    from mlflow.pyfunc import get_model_dependencies

    requirements = Path(get_model_dependencies("models:/ml_project@champion")).read_text()
    assert ("torch==" in requirements) == (experiment == "t6"), requirements

    rows = pd.read_csv(repo / "rows.csv")
    served = serve_and_score(repo, "models:/ml_project@champion", rows)
    expected = onnx_proba(repo, "models:/ml_project@champion")
    assert pd.DataFrame(served).to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-4)
    via_file = onnx_proba(repo, f"releases/ml_project/model_v{version.version}.onnx")
    assert via_file.equals(expected)
