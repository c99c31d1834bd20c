"""Weights & Biases: offline by default, written under the repository root; `wandb sync` later."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml_project.params import TrackingParams
from ml_project.tracking.buffer import StepBuffer

FLUSH_SECONDS = 2.0


class WandbTracker:
    name = "wandb"
    required = False
    in_child = True  # start (imports, store, service) in a forked process: see child.py
    needs_model = False  # log_model uploads the file; the child need not load the model

    def __init__(self, run):
        self.run = run
        self.run_id = run.id
        # run.log is an IPC call per step; the buffer moves it off the training loop. Every
        # other call holds the writer off, since a W&B run is not meant for concurrent use.
        self.buffer = StepBuffer(self._write, FLUSH_SECONDS, self.name)

    def _write(self, batch) -> None:
        for step, metrics, _ in batch:
            self.run.log(metrics, step=step)

    @classmethod
    def from_params(cls, params: TrackingParams, run) -> WandbTracker | None:
        import wandb

        mode = os.environ.get("WANDB_MODE") or params.wandb.mode
        if mode == "disabled" or (run.join is not None and not run.join.get("wandb")):
            return None  # off, or joining while the train stage had no W&B run
        kwargs = dict(
            project=os.environ.get("WANDB_PROJECT") or params.wandb.project or params.experiment,
            entity=os.environ.get("WANDB_ENTITY") or params.wandb.entity,
            # Under the main root, also from a queued experiment's temporary workspace.
            dir=os.environ.get("WANDB_DIR") or str(run.root),
            name=run.name or None,
            job_type=run.stage,
            reinit="create_new",
            # A joining stage (evaluate) continues the train stage's run, which already holds
            # the installed packages: listing them again reads every package's metadata
            # (0.3 s of CPU) for the same list.
            settings=wandb.Settings(
                silent=True, console="off", x_save_requirements=run.join is None
            ),
        )
        # W&B's cache (wandb-core's logs) and data dir (artifact staging: a copy of every logged
        # file, kept for `wandb sync`) default to ~/.cache and ~/.local/share, where nothing
        # ever removes them. Keep them beside the runs, in the ignored wandb/ folder.
        runs = Path(kwargs["dir"]) / "wandb"
        os.environ.setdefault("WANDB_CACHE_DIR", str(runs / "cache"))
        os.environ.setdefault("WANDB_DATA_DIR", str(runs / "data"))
        if (run.join or {}).get("wandb"):
            kwargs.update(id=run.join["wandb"], resume="allow")
        try:
            started = wandb.init(mode=mode, **kwargs)  # type: ignore[arg-type]  # W&B checks it
        except wandb.errors.UsageError as exc:
            if mode != "online" or "api key" not in str(exc).lower():
                raise
            print(
                "warning: W&B is set to online but no API key is configured; logging offline "
                "instead (upload later with `wandb sync`)",
                file=sys.stderr,
            )
            started = wandb.init(mode="offline", **kwargs)
        wanted = Path(kwargs["dir"]).resolve()
        if not Path(started.dir).resolve().is_relative_to(wanted):
            # W&B falls back to a temporary directory when it cannot write where it was told;
            # a run there would be lost, so treat it as a tracker failure.
            started.finish(exit_code=1)
            raise OSError(f"cannot write under {wanted} (W&B fell back to {started.dir})")
        return cls(started)

    def log_params(self, params: Mapping[str, Any]) -> None:
        with self.buffer.exclusive():
            self.run.config.update(dict(params), allow_val_change=True)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        # W&B tags are labels; the key=value pairs also go to the config for filtering.
        with self.buffer.exclusive():
            labels = {*self.run.tags, *(f"{k}={v}" for k, v in tags.items())}
            self.run.tags = tuple(sorted(labels))
            self.run.config.update({f"tags.{k}": v for k, v in tags.items()}, allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.buffer.add(metrics, step)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self.buffer.flush()
        with self.buffer.exclusive():
            self.run.summary.update(dict(metrics))

    def log_artifact(self, path: Path, kind: str = "file") -> None:
        import wandb

        artifact = wandb.Artifact(f"{kind}-{self.run.id}", type=kind)
        if Path(path).is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        with self.buffer.exclusive():
            self.run.log_artifact(artifact)

    def log_model(self, model: Any, path: Path, input_example: Any) -> None:
        import wandb

        artifact = wandb.Artifact(f"model-{self.run.id}", type="model")
        artifact.add_file(str(path), name=Path(path).name)
        with self.buffer.exclusive():
            self.run.log_artifact(artifact)

    def close(self, status: str) -> None:
        try:
            self.buffer.close()
        finally:
            self.run.finish(exit_code=0 if status == "success" else 1)
