"""Readable data versions (v1, v2, ...): labels in git refs, concurrency, two clones sharing a
remote, listing, load_etl and replay (issue 12)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ml_project import versions as V
from tests.helpers.data import manifest
from tests.helpers.notebooks import run_notebook
from tests.helpers.project import ROOT, make_project, project_env, project_environ, sh


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for cmd in ("git init -q -b main", "git commit -q --allow-empty -m init"):
        subprocess.run(cmd, shell=True, cwd=path, check=True, env=git_env())
    return path


def git_env() -> dict[str, str]:
    env = project_env()
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@x",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@x",
    )
    return env


def hashes(n: int) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(n)]


# --------------------------------------------------------------------------- one repository


def test_labels_are_given_in_order_and_kept(tmp_path):
    root = git_repo(tmp_path / "r")
    a, b = hashes(2)
    assert V.ensure_label(manifest(a), root=root) == "v1"
    assert V.ensure_label(manifest(b, "diabetes"), root=root) == "v2"
    assert V.ensure_label(manifest(a), root=root) == "v1"
    records = V.labels(root)
    assert list(records) == ["v1", "v2"]
    assert records["v2"]["data_version"] == b and records["v2"]["source"] == "diabetes"
    assert set(records["v1"]["code"]) == {"data.py", "features.py"}
    assert V.resolve("v2", root) == ("v2", b, None)
    assert V.resolve(b[:6], root) == ("v2", b, None)
    # Commits, not blobs: `dvc exp pull` refuses to fetch into a clone with a ref to a blob.
    for ref in (f"{V.LABELS}v1", f"{V.HASHES}{a}"):
        kind = subprocess.run(["git", "cat-file", "-t", ref], cwd=root, capture_output=True)
        assert kind.stdout.decode().strip() == "commit"


def _label_in_order(root: Path, order: list[str], out: Path) -> None:
    with project_environ():  # what the git commands of a process the tests start would see
        labelled = {h: V.ensure_label(manifest(h), root=root) for h in order}
    out.write_text(json.dumps(labelled))


def test_concurrent_labelling_never_shares_a_label(tmp_path):
    """Four processes label the same eight hashes in different orders at once. They are forked
    from this one, which has imported everything already: started fresh, each spent 1.3 s
    importing pandas and the package, and 0.15 s labelling."""
    root = git_repo(tmp_path / "r")
    all_hashes = hashes(8)
    orders = [all_hashes, all_hashes[::-1], all_hashes[1::2] + all_hashes[::2], all_hashes[3:]]
    outs = [tmp_path / f"seen{k}.json" for k in range(len(orders))]
    fork = multiprocessing.get_context("fork")
    procs = [
        fork.Process(target=_label_in_order, args=(root, order, out))
        for order, out in zip(orders, outs, strict=True)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * len(procs)
    seen = [json.loads(out.read_text()) for out in outs]
    records = V.labels(root)
    assert list(records) == [f"v{i}" for i in range(1, 9)]
    truth = {r["data_version"]: label for label, r in records.items()}
    assert sorted(truth) == sorted(all_hashes)  # each hash exactly one label
    for result in seen:
        assert all(truth[h] == label for h, label in result.items())


def test_unknown_label_is_one_line_naming_the_known_ones(tmp_path):
    root = git_repo(tmp_path / "r")
    V.ensure_label(manifest(hashes(1)[0]), root=root)
    with pytest.raises(V.VersionError) as info:
        V.resolve("v7", root)
    assert str(info.value) == (
        "data version 'v7': not a label (v1), a data_version hash prefix or an experiment "
        "name (none)"
    )


# --------------------------------------------------------------------------- two clones


@pytest.fixture
def clones(tmp_path) -> tuple[Path, Path]:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    a = git_repo(tmp_path / "a")
    subprocess.run(f"git remote add origin {remote} && git push -q origin main", shell=True,
                   cwd=a, check=True, env=git_env())  # fmt: skip
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(remote), str(b)], check=True, env=git_env())
    return a, b


def test_two_clones_agree_and_a_lost_race_takes_the_next_number(clones, monkeypatch):
    a, b = clones
    h1, h2, h3 = hashes(3)
    assert V.ensure_label(manifest(h1), root=a) == "v1"
    # b decides before it has seen a's v1 (its fetch comes too late): the push is refused,
    # b drops its local v1 and takes v2.
    real = V.fetch
    calls = []
    monkeypatch.setattr(V, "fetch", lambda root, remote=None: calls.append(1) or (
        True if len(calls) == 1 else real(root, remote)))  # fmt: skip
    assert V.ensure_label(manifest(h2), root=b) == "v2"
    monkeypatch.setattr(V, "fetch", real)
    assert V.ensure_label(manifest(h1), root=b) == "v1"
    assert V.ensure_label(manifest(h3), root=a) == "v3"
    V.fetch(a)
    V.fetch(b)
    in_a = {k: r["data_version"] for k, r in V.labels(a).items()}
    in_b = {k: r["data_version"] for k, r in V.labels(b).items()}
    assert in_a == in_b == {"v1": h1, "v2": h2, "v3": h3}


def test_offline_label_that_was_taken_meanwhile_cannot_be_published(clones, monkeypatch):
    a, b = clones
    h1, h2 = hashes(2)
    monkeypatch.setattr(V, "fetch", lambda root, remote=None: False)  # b is offline
    assert V.ensure_label(manifest(h2), root=b) == "v1"
    monkeypatch.undo()
    assert V.ensure_label(manifest(h1), root=a) == "v1"  # published first
    with pytest.raises(V.VersionError) as info:
        V.publish(b)
    assert str(info.value).startswith("data version v1: the remote 'origin' has another v1")


# --------------------------------------------------------------------------- the real pipeline


def run_line(output: str, stage: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"{stage}: "))


@pytest.fixture(scope="module")
def exp_repo(built, tmp_path_factory) -> Path:
    """The built project plus experiment t1: `-S data.source=diabetes` and nothing else."""
    repo = tmp_path_factory.mktemp("versions") / "repo"
    shutil.copytree(built, repo, symlinks=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for tracker in ("mlflow", "wandb"):
        params["tracking"][tracker]["enabled"] = False
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git commit -q -m 'no trackers' params.yaml", repo)
    out = sh("dvc exp run -n t1 -S data.source=diabetes", repo).stdout
    (repo / "t1.log").write_text(out)
    return repo


@pytest.mark.slow
def test_one_flag_switches_to_regression_and_lines_carry_the_label(exp_repo):
    out = (exp_repo / "t1.log").read_text()
    assert run_line(out, "etl") == (
        "etl: diabetes, task regression (bundled dataset), train 264 / val 89 / test 89 rows, "
        "10 features, data version v2 (ff74d6f2313369b4)"
    )
    assert run_line(out, "train").startswith("train: hgb, data v2 (ff74d6f2313369b4), 100 step(s)")
    metrics = json.loads((exp_repo / "evaluation/metrics.json").read_text())["test"]
    assert set(metrics) == {"rmse", "mae", "r2"}
    info = json.loads((exp_repo / "models/train_info.json").read_text())
    assert (info["metric"], info["data_label"]) == ("rmse", "v2")


@pytest.mark.slow
def test_versions_table_lists_labels_and_their_experiments(exp_repo):
    out = sh("python -m ml_project.data versions", exp_repo).stdout.splitlines()
    assert out[0].split() == [
        "data_version", "rows", "features", "source", "task", "etl", "params", "code",
        "experiments"
    ]  # fmt: skip
    v1 = out[2].split()
    v2 = out[3].split()
    assert v1[:7] == ["v1", "78c44e24b5247356", "341/114/114", "30", "breast_cancer",
                      "classification", "-"]  # fmt: skip
    assert v2[:7] == ["v2", "ff74d6f2313369b4", "264/89/89", "10", "diabetes", "regression", "-"]
    assert v2[7] == "-" and re.fullmatch(r"data.py@\w{7}", v2[8]) and v2[-1] == "t1"
    frame = V.table(exp_repo)
    assert frame.loc["v2", "experiments"] == "t1" and frame.loc["v1", "features"] == 30


@pytest.mark.slow
def test_load_etl_reads_any_version_without_touching_the_workspace(exp_repo):
    from ml_project.data import load_etl

    before = sh("git status --porcelain", exp_repo).stdout
    manifest_before = (exp_repo / "data/processed/manifest.json").read_text()
    for ref in ("v1", "78c44e", "t1", "v2"):
        data = load_etl(ref, exp_repo)
        assert data.label == ("v1" if ref in ("v1", "78c44e") else "v2")
        assert len(data.train) == data.manifest.rows["train"]
        assert data.manifest.target in data.val.columns
    assert load_etl("t1", exp_repo).manifest.task == "regression"
    assert sh("git status --porcelain", exp_repo).stdout == before
    assert (exp_repo / "data/processed/manifest.json").read_text() == manifest_before


@pytest.mark.slow
def test_bad_versions_are_one_line_with_exit_2(exp_repo, tmp_path):
    proc = sh("python -m ml_project.versions show v9", exp_repo, check=False)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: data version 'v9': not a label (v1, v2), a data_version hash prefix or an "
        "experiment name (t1)\n"
    )
    # The data gone from the cache, and a remote that does not have it either.
    repo = tmp_path / "repo"
    shutil.copytree(exp_repo, repo, symlinks=True)
    shutil.rmtree(repo / ".dvc/cache")
    (tmp_path / "empty").mkdir()
    sh(f"dvc remote modify --local local url {tmp_path / 'empty'}", repo)
    for ref in ("t1", "v1"):
        proc = sh(f"python -m ml_project.versions show {ref}", repo, check=False)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
        assert "is in neither the DVC cache nor the DVC remote; run `dvc pull`" in proc.stderr
        assert "dvc exp pull" in proc.stderr


@pytest.mark.slow
def test_a_failing_etl_step_is_one_line_and_keeps_outputs(exp_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(exp_repo, repo, symlinks=True)
    before = {p: p.read_bytes() for p in (repo / "data/processed").iterdir()}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for steps, message in [
        (["squash"], "error: params.yaml: etl.steps.0: unknown step 'squash' (valid: "),
        (
            [{"drop": {"columns": ["target"]}}],
            "error: etl.steps.0 (drop): its result has no target column 'target'",
        ),
    ]:
        params["etl"] = {"steps": steps}
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        proc = sh("python stages/etl.py", repo, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith(message), proc.stderr
        assert len(proc.stderr.splitlines()) == 1
        assert {p: p.read_bytes() for p in (repo / "data/processed").iterdir()} == before


@pytest.mark.slow
def test_the_notebook_loads_a_version_and_replays_t1(exp_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(exp_repo, repo, symlinks=True)
    shutil.copy2(ROOT / "notebooks/data_versions.ipynb", repo / "notebooks/data_versions.ipynb")
    before = sh("git status --porcelain", repo).stdout
    outputs = run_notebook(repo, "notebooks/data_versions.ipynb")
    assert not [o for o in outputs if o.output_type == "error"]
    results = [o["data"]["text/plain"] for o in outputs if o.output_type == "execute_result"]
    assert "t1" in results[0] and "ff74d6f2313369b4" in results[0]
    assert results[1] == "('v2', 'ff74d6f2313369b4', 'regression', (264, 11))"
    assert results[-1] == "(True, {})"  # replayed: every metric as recorded
    assert sh("git status --porcelain", repo).stdout == before
    assert sh("git worktree list --porcelain", repo).stdout.count("worktree ") == 1


def test_notebook_is_stored_without_outputs():
    notebook = json.loads((ROOT / "notebooks/data_versions.ipynb").read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


# --------------------------------------------------------------------------- experiment names


def fake_experiment(repo: Path, name: str) -> str:
    """An experiment ref as DVC writes it (refs/exps/<base[:2]>/<base[2:]>/<name>) on a new
    commit; the names logic reads refs only, so no pipeline has to run."""
    env = git_env()
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=env, text=True,
                          capture_output=True, check=True).stdout.strip()  # fmt: skip
    tree = subprocess.run(["git", "rev-parse", "HEAD^{tree}"], cwd=repo, env=env, text=True,
                          capture_output=True, check=True).stdout.strip()  # fmt: skip
    commit = subprocess.run(["git", "commit-tree", tree, "-p", base, "-m", f"{name} {repo.name}"],
                            cwd=repo, env=env, text=True, capture_output=True,
                            check=True).stdout.strip()  # fmt: skip
    ref = f"refs/exps/{base[:2]}/{base[2:]}/{name}"
    subprocess.run(["git", "update-ref", ref, commit], cwd=repo, env=env, check=True)
    return ref


@pytest.fixture
def project_clones(tmp_path) -> tuple[Path, Path]:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    a = make_project(tmp_path / "a")
    sh(f"git remote add origin {remote} && git push -q origin main", a)
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(remote), str(b)], check=True, env=git_env())
    sh("dvc config core.analytics false --local", b)
    return a, b


def test_next_name_skips_the_remotes_experiments_and_push_refuses_a_taken_name(project_clones):
    a, b = project_clones
    ref = fake_experiment(a, "t1")
    fake_experiment(a, "t2")
    sh(f"git push -q origin {ref} {ref.replace('/t1', '/t2')}", a)
    # b has no experiment of its own, yet t1 and t2 exist on the shared remote.
    assert sh("python -m ml_project.sweeps next-name", b).stdout.strip() == "t3"
    # b made its own t2 while it could not see the remote: pushing it must not add a second t2.
    fake_experiment(b, "t2")
    proc = sh("python -m ml_project.versions exp-push t2", b, check=False)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert re.fullmatch(
        r"error: experiment 't2': the remote 'origin' already has another 't2' \(\w{7}; this "
        r"clone's is \w{7}\); rename yours \(dvc exp rename t2 <new name>\) and push that\n",
        proc.stderr,
    )
    remote_t2 = sh("git ls-remote origin 'refs/exps/*/t2'", b).stdout.split()
    assert len(remote_t2) == 2  # still exactly one t2 there: a's


@pytest.mark.slow
def test_a_second_clone_sees_the_labels_and_loads_data_from_the_dvc_remote(exp_repo, tmp_path):
    """Clone a pushes t1 (git refs to a bare remote, data to a DVC remote); clone b gets only
    the git refs, then reads t1's data from the DVC remote: its workspace and cache untouched
    before, the labels the same as a's."""
    a = tmp_path / "a"
    shutil.copytree(exp_repo, a, symlinks=True)
    remote, storage = tmp_path / "remote.git", tmp_path / "storage"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    sh(f"git remote add origin {remote} && git push -q origin main", a)
    sh(f"dvc remote modify --local local url {storage}", a)
    out = sh("python -m ml_project.versions exp-push t1", a).stdout
    assert out.strip() == "pushed experiment t1 and its data to 'origin', and the data labels"

    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(remote), str(b)], check=True, env=git_env())
    sh(f"dvc remote modify --local local url {storage}", b)
    sh("git fetch -q origin 'refs/exps/*:refs/exps/*'", b)
    table = sh("python -m ml_project.data versions", b).stdout
    assert re.search(r"^v2\s+ff74d6f2313369b4\s+264/89/89", table, re.MULTILINE)
    assert V.labels(b) == V.labels(a)
    data = V.load_etl("v2", b)  # by label: found among the experiments, from the remote
    assert (data.label, len(data.train)) == ("v2", 264)
    assert V.load_etl("t1", b).data_version == "ff74d6f2313369b4"
    assert not (b / "data/processed").exists()


@pytest.mark.slow
def test_two_queued_experiments_making_new_data_at_once_get_distinct_labels(exp_repo, tmp_path):
    """Both run in DVC's temporary workspaces, on two workers, and label in the main repo."""
    repo = tmp_path / "repo"
    shutil.copytree(exp_repo, repo, symlinks=True)
    sh("git commit -q -am 't1 applied'", repo)
    for seed in (1, 2):
        sh(f"dvc exp run --queue -n s{seed} -S data.seed={seed}", repo)
    sh("dvc queue start -j 2", repo)
    deadline = time.monotonic() + 600
    while "Success" not in (status := sh("dvc queue status", repo).stdout) or any(
        s in status for s in ("Queued", "Running")
    ):
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status
    lines = {
        name: run_line(sh(f"dvc queue logs {name}", repo).stdout, "etl") for name in ("s1", "s2")
    }
    labels = {name: re.search(r"data version (v\d+)", line)[1] for name, line in lines.items()}
    assert sorted(labels.values()) == ["v3", "v4"], lines
    frame = V.table(repo)
    assert {frame.loc[label, "experiments"] for label in labels.values()} == {"s1", "s2"}
    assert set(frame.loc[["v3", "v4"], "params"]) == {"seed=1", "seed=2"}
