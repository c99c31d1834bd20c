"""dvclive: the versioned source of truth. Its files are declared in dvc.yaml, never rewritten."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml_project.params import TrackingParams
from ml_project.tracking.buffer import StepBuffer

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
        # A key's first row waits here until a second step logs it: a value logged once (the
        # final-only val metrics, a one-iteration model's curve) would be a lone dot in
        # `dvc plots show`; it lives in metrics.json only.
        self._first: dict[str, str] = {}
        self._plot_path("x").parent.mkdir(parents=True, exist_ok=True)  # a declared output
        self.buffer = StepBuffer(self._write, FLUSH_SECONDS, self.name)

    @classmethod
    def from_params(cls, params: TrackingParams, run) -> DvcliveTracker | None:
        if run.join is not None:
            return None  # a joining stage (evaluate) writes its own DVC metrics and plots
        # dvclive files are stage outputs: relative to the stage's working directory.
        return cls(Path(params.dvclive.dir) / run.stage, resume=run.resume)

    def _write(self, batch) -> None:
        """Append the batch to dvclive's per-metric TSV files, one open per file.

        This writes the same files `Live.log_metric` writes (`plots/metrics/<key>.tsv`, header
        `step<TAB><name>`), but `log_metric` opens the file once per value, and
        `Live.next_step()` re-reads every file for Studio, a cost that grows with the step
        count. Batched, a step costs microseconds. The summary goes through dvclive.
        """
        rows: dict[str, list[str]] = {}
        for step, metrics, _ in batch:
            for key, value in metrics.items():
                line = f"{step}\t{value}\n"
                self._set_summary(key, value)
                if key in rows or self._plot_path(key).exists():
                    rows.setdefault(key, []).append(line)
                elif key in self._first:
                    rows[key] = [self._first.pop(key), line]
                else:
                    self._first[key] = line
        for key, lines in rows.items():
            path = self._plot_path(key)
            header = [] if path.exists() else [f"step\t{path.stem}\n"]
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as out:
                out.writelines(header + lines)
        self.live.step = batch[-1][0]
        self.live.make_summary()

    def _plot_path(self, key: str) -> Path:
        return Path(self.live.plots_dir) / "metrics" / f"{key}.tsv"

    def _set_summary(self, key: str, value) -> None:
        node = self.live.summary
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def log_params(self, params: Mapping[str, Any]) -> None:
        with self.buffer.exclusive():
            self.live.log_params(dict(params))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass  # DVC itself records the experiment name and baseline commit

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.buffer.add(metrics, step)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        with self.buffer.exclusive():
            for key, value in metrics.items():
                self._set_summary(key, value)
            self.live.make_summary()

    def log_artifact(self, path: Path, kind: str = "file") -> None:
        pass  # artifacts are DVC stage outputs, declared in dvc.yaml

    def log_model(self, model: Any, path: Path, input_example: Any) -> None:
        pass  # the model file is a DVC stage output, declared in dvc.yaml

    def close(self, status: str) -> None:
        self.buffer.close()  # its last write also writes the summary with the last step
        # In `dvc exp run`, end() git-adds the files of this directory that no stage declares,
        # so the experiment's commit carries them, at the price of building DVC's index
        # (0.3 s). dvc.yaml declares all this tracker writes (metrics, params, step plots).
        self.live._inside_dvc_exp = False  # noqa: SLF001 - dvclive has no switch for it
        self.live.end()
