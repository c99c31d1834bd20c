"""MLflow: one run per train stage, in a local SQLite store at the repository root by default."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml_project.params import TrackingParams
from ml_project.tracking import TrackerError, describe, redact
from ml_project.tracking.buffer import StepBuffer

FLUSH_SECONDS = 2.0
MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call
MAX_PARAM_BATCH = 100
ENV_DEFAULTS = {
    # An unreachable server must fail in seconds, not after MLflow's ~4 minutes of retries.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # No network at run time: never let log_model run `pip install --dry-run`.
    "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
    # Nor send usage telemetry (it also writes an installation id to ~/.config/mlflow).
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


# Database servers MLflow's SQLAlchemy store talks to, by URI scheme, with their usual ports.
DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
CONNECT_SECONDS = 5.0


def reachable(uri: str) -> None:
    """Fail in seconds on a database server nothing listens at: MLflow retries creating its
    engine ten times with a growing sleep, about 200 s, before it gives up."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if scheme not in DB_PORTS or not parts.hostname:
        return
    port = parts.port or DB_PORTS[scheme]
    try:
        socket.create_connection((parts.hostname, port), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach {parts.hostname}:{port} ({exc})") from None


def default_uri(root: Path) -> str:
    return f"sqlite:///{Path(root) / 'mlflow.db'}"


def missing_store(uri: str) -> Path | None:
    """The file of a `sqlite:///<path>` store that does not exist, else None. Reading from it
    through MLflow would create an empty store (2-3 s, and a stray file) to find nothing."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = Path(uri.removeprefix(prefix).split("?", 1)[0])
    return None if path.is_file() else path


class MlflowTracker:
    """Writes through `MlflowClient` with explicit run ids: no global active-run state.

    Metrics go through a `StepBuffer`: `log_batch` runs on a background thread at most every
    FLUSH_SECONDS and on close, so a step costs microseconds instead of a database write.
    """

    name = "mlflow"
    required = False
    in_child = True  # start (imports, store, service) in a forked process: see child.py

    def __init__(self, uri: str, experiment: str, root: Path, run_id: str | None, run_name: str):
        for key, value in ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        # MLflow logs every database error with its full traceback (~90 lines) before raising
        # it; the fan-out reports the raised error in one line that names the store instead.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        from mlflow import MlflowClient

        self.uri = uri
        self.store = redact(uri)
        self.client = MlflowClient(tracking_uri=uri)
        if run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                experiment_id = found.experiment_id
            else:
                # With the local store, artifacts go beside it at the root too: MLflow's default
                # ./mlruns would land in a queued experiment's deleted workspace.
                location = None
                if uri == default_uri(root):
                    location = (Path(root) / "mlartifacts").as_uri()
                experiment_id = self.client.create_experiment(
                    experiment, artifact_location=location
                )
            warn_if_moved(self.client, experiment_id, uri, root)
            run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        self.run_id = run_id
        self.last_step = 0  # the step the logged model's metrics are linked at
        self.buffer = StepBuffer(self._write, FLUSH_SECONDS, self.name)

    @classmethod
    def from_params(cls, params: TrackingParams, run) -> MlflowTracker | None:
        uri = (
            params.mlflow.tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or default_uri(run.root)
        )
        run_id = (run.join or {}).get("mlflow")
        if run.join is not None and run_id is None:
            return None  # joining, but the train stage had no MLflow run: nothing to attach to
        try:
            reachable(uri)
            return cls(uri, params.experiment, run.root, run_id, run.name or run.stage)
        except Exception as exc:
            raise TrackerError(describe(exc, redact(uri))) from exc

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAM_BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def _write(self, batch, model_id: str | None = None) -> None:
        from mlflow.entities import Metric

        values = [
            Metric(key, float(value), int(stamp * 1000), step, model_id=model_id)
            for step, metrics, stamp in batch
            for key, value in metrics.items()
        ]
        for start in range(0, len(values), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=values[start : start + MAX_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.buffer.add(metrics, step)
        self.last_step = max(self.last_step, step)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        """Final metrics (evaluate's `test/*`), also linked to the run's logged model, so the
        model's page shows what it scored on the test split."""
        import time

        self.buffer.flush()
        outputs = self.client.get_run(self.run_id).outputs
        models = [m.model_id for m in (outputs.model_outputs if outputs else [])]
        with self.buffer.exclusive():
            self._write(
                [(self.last_step, dict(metrics), time.time())], models[-1] if models else None
            )

    def log_artifact(self, path: Path, kind: str = "file") -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=kind)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path=kind)

    def prepare(self) -> None:
        """Import what `log_model` needs while the stage still trains (run in the child)."""
        from ml_project.persistence import skops_io

        skops_io()  # first, so that nothing imports skops.io the way that pulls in torch
        import mlflow.sklearn  # noqa: F401
        from mlflow.models import infer_signature  # noqa: F401

    def log_model(self, model: Any, path: Path, input_example: Any) -> None:
        """`mlflow.sklearn.log_model` with a signature, an input example and our package code."""
        import mlflow
        import mlflow.sklearn
        from mlflow.models import infer_signature

        from ml_project.persistence import trusted_types

        method, output = serving_output(model, input_example)
        types = trusted_types(path)  # what the file holds, read once (a walk of its tree)
        # log_model links the run's metrics logged at `step` to the model: the final ones.
        self.buffer.flush()
        mlflow.set_tracking_uri(self.uri)
        with mlflow.start_run(run_id=self.run_id):
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(input_example, output),
                input_example=input_example,
                pyfunc_predict_fn=method,
                skops_trusted_types=types,
                code_paths=[str(Path(__file__).resolve().parents[1])],
                pip_requirements=_pip_requirements(model_packages(types)),
                step=self.last_step,
            )

    def close(self, status: str) -> None:
        try:
            self.buffer.close()
        finally:
            self.client.set_terminated(self.run_id, "FINISHED" if status == "success" else "FAILED")


def serving_output(model, X) -> tuple[str, Any]:
    """What the served model answers: (the pyfunc's predict method, its output on `X`).

    Classifiers serve class probabilities (one column per class, in `classes_` order), which
    is what a scoring service thresholds or ranks; regressors serve predictions. The
    signature is inferred from this same output, so the two always agree. Whether there are
    probabilities is the model spec's decision (`ModelSpec.outputs`).
    """
    from ml_project.models import spec_of

    pred, proba = spec_of(model).outputs(model, X)
    return ("predict_proba", proba) if proba is not None else ("predict", pred)


# Needed only by models whose own code uses them (a torch model's estimator imports torch).
OPTIONAL_REQUIREMENTS = ("torch",)


def model_packages(type_names: list[str]) -> set[str]:
    """Top-level packages that the modules defining the model's types import: `torch` for
    a torch estimator. Read from the types the model file holds (not from `sys.modules`,
    where a fork server's preloaded libraries would show up for every model)."""
    import importlib
    from types import ModuleType

    roots = set()
    for name in type_names:
        try:
            module = importlib.import_module(name.rsplit(".", 1)[0])
        except ImportError:
            continue
        for value in vars(module).values():
            owner = value.__name__ if isinstance(value, ModuleType) else None
            owner = owner or getattr(value, "__module__", None)
            if isinstance(owner, str):
                roots.add(owner.split(".")[0])
    return roots


def _pip_requirements(packages: set[str]) -> list[str]:
    """Pinned from the running environment (MLflow's own inference spawns a slow subprocess
    that imports the model to see what it needs); `packages` adds the optional ones."""
    from importlib.metadata import version

    names = ["scikit-learn", "skops", "numpy", "pandas"]
    names += [name for name in OPTIONAL_REQUIREMENTS if name in packages]
    return [f"{name}=={version(name)}" for name in names]


def warn_if_moved(client, experiment_id: str, uri: str, root: Path) -> None:
    """One line when the local store's experiment keeps its artifacts outside this repository.

    The artifact location is an absolute path fixed when the experiment was created; in a
    moved or copied project, `mlflow.db` still points at the old folder.
    """
    if uri != default_uri(root):
        return  # a server or a store of the user's choice: its locations are its own
    location = client.get_experiment(experiment_id).artifact_location
    expected = (Path(root) / "mlartifacts").as_uri()
    if location.startswith("file:") and location.rstrip("/") != expected:
        print(
            f"warning: MLflow experiment in {Path(root) / 'mlflow.db'} stores artifacts in "
            f"{location}, not this repository's mlartifacts/ (project moved or copied?); "
            "new runs' artifacts go there too; move mlflow.db and mlartifacts/ back, or delete "
            "both to start a fresh store here",
            file=sys.stderr,
        )
