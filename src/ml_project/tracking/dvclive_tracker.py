"""dvclive: the versioned source of truth. Its files are declared in dvc.yaml, never rewritten."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml_project.params import TrackingParams

FLUSH_SECONDS = 2.0


class DvcliveTracker:
    name = "dvclive"
    required = True

    def __init__(self, directory: Path, resume: bool = False):
        from dvclive import Live

        # dvcyaml=None: dvc.yaml declares these files itself, so the run-cache stays usable and
        # dvclive never rewrites dvc.yaml. Inside a stage, DVC owns experiment saving.
        self.live = Live(
            dir=str(directory), dvcyaml=None, save_dvc_exp=False, resume=resume, report=None
        )
        self.directory = Path(directory)
        self._last_sync = time.monotonic()

    @classmethod
    def from_params(cls, params: TrackingParams, run) -> DvcliveTracker | None:
        # dvclive files are stage outputs: relative to the stage's working directory.
        return cls(Path(params.dvclive.dir) / run.stage, resume=run.resume)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.live.log_params(dict(params))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass  # DVC itself records the experiment name and baseline commit

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        # log_metric appends one TSV row per key: cheap and flat. Live.next_step() would also
        # rebuild the summary and re-read every TSV for Studio, a cost that grows with the step
        # count, so that sync happens at most every FLUSH_SECONDS and on close.
        self.live.step = step
        for key, value in metrics.items():
            self.live.log_metric(key, value, timestamp=False)
        now = time.monotonic()
        if now - self._last_sync >= FLUSH_SECONDS:
            self.live.sync()
            self._last_sync = now

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            node = self.live.summary
            *parents, leaf = key.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        self.live.make_summary()

    def log_artifact(self, path: Path, kind: str = "file") -> None:
        pass  # artifacts are DVC stage outputs, declared in dvc.yaml

    def log_model(self, model: Any, path: Path, input_example: Any) -> None:
        pass  # the model file is a DVC stage output, declared in dvc.yaml

    def close(self, status: str) -> None:
        # end() resets the step to the one in the last written summary; write it first, or
        # steps logged since the last sync would be reported under an older step.
        self.live.make_summary()
        self.live.end()
