"""From experiment to deployment: promote one DVC experiment's model to a new registry version.

    python -m ml_project.promote t5          # or: make promote EXP=t5

For experiment `t5`, in this order (a refusal comes before any change):
1. checks that t5 exists and that its export passed parity (`export/parity.json` at t5's
   commit holds the ONNX check; a failed export writes none);
2. MLflow Model Registry: registers the model of t5's MLflow run (tag `dvc.exp_name`) as a
   new version of the registered model `tracking.experiment`, and moves the alias `champion`
   to it: `models:/<name>@champion` then loads and serves it;
3. DVC's model registry: tags t5's commit `<name>@v<N>.0.0` (a GTO version tag; the
   `artifacts:` entry of dvc.yaml names `export/model`), so `dvc artifacts get . <name>
   --rev v<N>.0.0` fetches that version;
4. copies t5's exported files, named with the version, to `releases/<name>/`
   (`model_v<N>.onnx`, `model_v<N>.skops`, `signature_v<N>.json`); the DVC outputs keep their
   stable paths (`export/model/model.onnx`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ml_project.errors import UserError, exits_on_user_error

ALIAS = "champion"
RELEASES = Path("releases")
EXPORT_FILES = {"model.onnx": "model_v{v}.onnx", "model.skops": "model_v{v}.skops"}
EXPORT_FILES["signature.json"] = "signature_v{v}.json"


@dataclass(frozen=True)
class Promotion:
    experiment: str
    name: str  # the registered model, and the DVC artifact
    version: int
    run_id: str
    rev: str  # the experiment's commit
    tag: str  # the git tag
    files: tuple[Path, ...]


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if done.returncode:
        raise UserError(f"git {args[0]}: {(done.stderr or done.stdout).strip().splitlines()[0]}")
    return done.stdout.strip()


def experiments() -> dict[str, str]:
    """DVC experiment names -> commits (`refs/exps/<baseline>/<name>`; not the queue's refs)."""
    from ml_project.sweeps.dvc_queue import experiment_commits

    return experiment_commits(Path.cwd())


def check_parity(experiment: str, rev: str) -> dict:
    """t5's parity report; refuses an experiment whose export did not pass."""
    import dvc.api

    try:
        report = json.loads(dvc.api.read("export/parity.json", rev=rev))
    except Exception:  # noqa: BLE001 - missing at that commit, or not in the cache
        report = {}
    onnx = report.get("onnx") or {}
    if not isinstance(onnx.get("max_abs_diff"), int | float):
        raise UserError(
            f"experiment '{experiment}': its export parity did not pass (no ONNX parity in "
            "export/parity.json at its commit); fix it and run it again before promoting"
        )
    return report


def registered_name() -> str:
    import yaml

    return yaml.safe_load(Path("params.yaml").read_text())["tracking"]["experiment"]


def tracking_uri() -> str:
    import yaml

    from ml_project.tracking import repo_root
    from ml_project.tracking.mlflow_tracker import default_uri

    configured = yaml.safe_load(Path("params.yaml").read_text())["tracking"]["mlflow"]
    return (
        configured.get("tracking_uri")
        or os.environ.get("MLFLOW_TRACKING_URI")
        or default_uri(repo_root())
    )


def find_run(client, name: str, experiment: str) -> str:
    found = client.get_experiment_by_name(name)
    runs = []
    if found is not None:
        runs = client.search_runs(
            [found.experiment_id],
            f"tags.`dvc.exp_name` = '{experiment}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        raise UserError(
            f"experiment '{experiment}': no finished MLflow run with tag dvc.exp_name="
            f"{experiment} in MLflow experiment '{name}' (was tracking.mlflow enabled?)"
        )
    return runs[0].info.run_id


def promote(experiment: str, alias: str = ALIAS) -> Promotion:
    """Register `experiment`'s model (MLflow version + alias, GTO tag, versioned files)."""
    import dvc.api

    known = experiments()
    if experiment not in known:
        valid = ", ".join(sorted(known)) or "none yet; run one with dvc exp run"
        raise UserError(f"experiment '{experiment}': not found (valid: {valid})")
    rev = known[experiment]
    check_parity(experiment, rev)
    name = registered_name()

    from mlflow import MlflowClient

    from ml_project.tracking.mlflow_tracker import ENV_DEFAULTS, missing_store

    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = tracking_uri()
    store = missing_store(uri)
    if store is not None:
        raise UserError(
            f"experiment '{experiment}': no MLflow store at {store} (was tracking.mlflow enabled?)"
        )
    client = MlflowClient(tracking_uri=uri)
    run_id = find_run(client, name, experiment)

    import mlflow

    mlflow.set_tracking_uri(uri)
    registered = mlflow.register_model(
        f"runs:/{run_id}/model",
        name,
        tags={"dvc.exp_name": experiment, "dvc.rev": rev},
    )
    version = int(registered.version)
    client.set_registered_model_alias(name, alias, str(version))

    tag = f"{name}@v{version}.0.0"
    _git("tag", "-a", tag, rev, "-m", f"Registering artifact {name} version v{version}.0.0")

    target = RELEASES / name
    target.mkdir(parents=True, exist_ok=True)
    (RELEASES / ".gitignore").write_text("*\n")  # releases are built files, never committed
    files = []
    for source, pattern in EXPORT_FILES.items():
        dest = target / pattern.format(v=version)
        with dvc.api.open(f"export/model/{source}", rev=rev, mode="rb") as src:
            tmp = dest.with_suffix(dest.suffix + ".tmp")
            tmp.write_bytes(src.read())
            tmp.replace(dest)
        files.append(dest)
    return Promotion(experiment, name, version, run_id, rev, tag, tuple(files))


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ml_project.promote", description=__doc__.split("\n")[0]
    )
    parser.add_argument("experiment", help="DVC experiment name (dvc exp show)")
    parser.add_argument(
        "--alias", default=ALIAS, help="registry alias to move (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    done = promote(args.experiment, args.alias)
    print(
        f"promoted {done.experiment}: models:/{done.name}@{args.alias} = version {done.version} "
        f"(run {done.run_id}); git tag {done.tag}; {', '.join(map(str, done.files))}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
