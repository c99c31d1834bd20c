"""Typed sections of params.yaml, parsed once and checked before any work starts.

Each stage loads only the sections it uses, so `dvc.yaml` can list exactly those keys and DVC
re-runs a stage only when something it reads has changed. Unknown keys, wrong types and
out-of-range values raise `ParamsError` with one line naming the key and the valid choices.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ml_project.errors import ParamsError, check_at_exit

PARAMS_FILE = Path("params.yaml")

Task = Literal["classification", "regression"]
# `auto`: ETL infers the task from the target (see `data.infer_task`) and writes it to the
# manifest, which is where later stages read it.
TaskChoice = Literal["auto", "classification", "regression"]
# The selection metric `train.metric: auto` stands for.
STANDARD_METRIC = {"classification": "f1", "regression": "rmse"}
# scikit-learn's bundled datasets (no download) and the task each one is for.
BUNDLED_DATASETS = {
    "breast_cancer": "classification",
    "iris": "classification",
    "wine": "classification",
    "diabetes": "regression",
}


class Section(BaseModel):
    """Base for params sections (and every model's hyperparameters): frozen; unknown keys,
    non-finite numbers (`inf`, `nan`) and booleans given for numbers are errors.

    Lax mode stays on so that YAML's `1` is a valid float; but lax mode would also read `true`
    as 1, which is never what a user who typed it meant.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _holds_bool(value) and _numbers_only(field.annotation):
            raise PydanticCustomError("bool_not_number", "Input should be a number, not a boolean")
        return value


def _holds_bool(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(_holds_bool(v) for v in value)
    return isinstance(value, bool)


def _numbers_only(annotation: Any) -> bool:
    """The annotation accepts int or float somewhere (`float | None`, `tuple[int, ...]`) and
    never bool or Any, so a boolean in the value can only be a mistake."""
    seen: set[Any] = set()

    def walk(tp: Any) -> None:
        if tp in (int, float, bool, Any):
            seen.add(tp)
        for arg in get_args(tp):
            walk(arg)

    walk(annotation)
    return bool(seen & {int, float}) and not seen & {bool, Any}


S = TypeVar("S", bound=BaseModel)


class DataParams(Section):
    """`data:` what to load, the task, and how to split it."""

    source: str = Field(
        "breast_cancer",
        description=f"a bundled dataset ({', '.join(BUNDLED_DATASETS)}) or a .csv/.parquet path",
    )
    target: str | None = Field(None, description="target column; required for files")
    task: TaskChoice = Field(
        "auto", description="auto: inferred from the target; or classification | regression"
    )
    test_size: float = Field(0.2, gt=0, lt=1)
    val_size: float = Field(0.2, gt=0, lt=1)
    seed: int = 42
    id_columns: Literal["error", "drop", "keep"] = Field(
        "error",
        description="columns with about one distinct value per row (IDs, free text): "
        "refuse them, drop them, or keep them (encoded within max_categories)",
    )
    max_categories: int = Field(
        100, ge=1, description="one-hot columns per categorical feature: its most frequent values"
    )
    min_frequency: int = Field(
        1, ge=1, description="train rows a category needs for its own one-hot column"
    )

    @model_validator(mode="after")
    def _sizes_leave_training_rows(self) -> DataParams:
        if self.test_size + self.val_size >= 0.9:
            raise ValueError(
                f"test_size + val_size must be below 0.9, got {self.test_size + self.val_size:g}"
            )
        return self


class TrainParams(Section):
    """`train:` model-independent training settings."""

    metric: str = Field(
        "auto",
        description="selection / early-stopping metric, see metrics.py; auto: f1 or rmse",
    )
    seed: int = 42
    resume: bool = Field(
        True, description="torch models: continue a killed run from its last epoch checkpoint"
    )
    cv_folds: int = Field(0, ge=0, description="K-fold cross-validation; 0: off")
    cv_final: Literal["refit", "ensemble"] = Field(
        "refit", description="after CV: refit on train+val, or average the K fold models"
    )

    @field_validator("cv_folds")
    @classmethod
    def _folds_are_off_or_several(cls, value: int) -> int:
        if value == 1:
            raise ValueError("must be 0 (off) or at least 2")
        return value


class EtlParams(Section):
    """`etl:` the user's row-wise transforms, applied between validation and the split.

    Each entry is a step name of `features.STEPS`, or `{name: {its params}}`; the steps and
    their params are checked by `features.parse_steps`.
    """

    steps: list[str | dict[str, Any]] = Field(default_factory=list)


def resolve_task(data: DataParams, train: TrainParams, task: str) -> tuple[DataParams, TrainParams]:
    """`data` and `train` for data of `task` (the manifest's): `auto` becomes the task and its
    standard metric; an explicit task that is not the data's means the data is stale."""
    if data.task not in ("auto", task):
        raise ParamsError(
            f"params.yaml: data.task is '{data.task}' but the processed data was built for "
            f"'{task}'; re-run etl (dvc repro)"
        )
    metric = STANDARD_METRIC[task] if train.metric == "auto" else train.metric
    return data.model_copy(update={"task": task}), train.model_copy(update={"metric": metric})


class ExportParams(Section):
    """`export:` formats and the parity tolerance (numpy.allclose semantics)."""

    formats: tuple[Literal["onnx", "torchscript"], ...] = ("onnx", "torchscript")
    atol: float = Field(1e-4, ge=0)
    rtol: float = Field(1e-5, ge=0)


class DvcliveParams(Section):
    enabled: bool = True
    dir: str = "dvclive"


class MlflowParams(Section):
    enabled: bool = True
    tracking_uri: str | None = Field(
        None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///<repo root>/mlflow.db"
    )


class WandbParams(Section):
    enabled: bool = True
    mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="$WANDB_MODE overrides it; online without an API key -> offline"
    )
    project: str | None = Field(None, description="default: $WANDB_PROJECT, else experiment")
    entity: str | None = Field(None, description="default: $WANDB_ENTITY")


class OptunaParams(Section):
    """`tracking.optuna`: in a search trial, report the selection metric per epoch to the
    trial and stop the trial its pruner gives up on; inert outside a trial."""

    enabled: bool = True


class TrackingParams(Section):
    """`tracking:` which trackers receive the run. dvclive is the versioned source of truth."""

    experiment: str = Field("ml_project", min_length=1)
    strict: bool = False
    dvclive: DvcliveParams = DvcliveParams()
    mlflow: MlflowParams = MlflowParams()
    wandb: WandbParams = WandbParams()
    optuna: OptunaParams = OptunaParams()


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` through libyaml where PyYAML has it: the same documents, 8-10x faster
    (params.yaml 15 -> 2 ms, dvc.lock 35 -> 3 ms), read by every stage and per revision."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506


def read_params(path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml into a plain dict, with a one-line error for a missing or broken file."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = load_yaml(text)
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}{where}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    _guard(path, text, raw)
    return raw


# --- one workspace, one experiment at a time ------------------------------------------------
# `dvc exp run -S ...` writes params.yaml before it takes the repository lock. A second run
# started in the same workspace therefore rewrites params.yaml under the first one and then
# fails on the lock: the first run's later stages would read the second's params, and DVC would
# record outputs made from a mix. Each stage checks both ways this can show.
CONCURRENT_HINT = (
    "another `dvc exp run` in this workspace? run experiments side by side with "
    "`dvc exp run --queue` and `dvc queue start`"
)


def _guard(path: Path, text: str, raw: dict[str, Any]) -> None:
    path = path.resolve()
    check_at_exit(f"unchanged:{path}", functools.partial(check_unchanged, path, text))
    stage = os.environ.get("DVC_STAGE")
    if stage and path.resolve() == PARAMS_FILE.resolve():
        check_upstream_params(stage, raw)


def check_unchanged(path: Path, text: str) -> None:
    """`path` must still read as `text`, what this stage read when it started."""
    try:
        now = path.read_text()
    except FileNotFoundError:
        now = None
    if now != text:
        raise ParamsError(
            f"{path.name}: changed while this stage ran ({CONCURRENT_HINT}); "
            "this run's outputs are not recorded"
        )


def check_upstream_params(
    stage: str, raw: Mapping[str, Any], lock: Path = Path("dvc.lock")
) -> None:
    """Under DVC: the params the earlier stages ran with (dvc.lock) must be today's.

    DVC runs the stages in dvc.yaml's order and locks each one as it finishes, so a stage
    whose predecessor was locked with other values is reading params.yaml after someone else
    rewrote it.
    """
    try:
        stages = (load_yaml(lock.read_text()) or {}).get("stages", {})
    except (FileNotFoundError, yaml.YAMLError):
        return
    for name, entry in stages.items():
        if name == stage:
            return  # only the stages before this one
        locked = ((entry or {}).get("params") or {}).get(PARAMS_FILE.name) or {}
        for key, value in locked.items():
            node: Any = raw
            for part in key.split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            if node != value:
                raise ParamsError(
                    f"params.yaml: {key} is {node!r}, but stage '{name}' ran with {value!r}: "
                    f"its outputs are stale (run the whole pipeline: dvc repro) or "
                    f"params.yaml was rewritten under this run ({CONCURRENT_HINT})"
                )


def parse_section(cls: type[S], raw: Any, key: str) -> S:
    """Validate `raw` as `cls`; errors name the full key, e.g. `data.test_size`."""
    if raw is None:
        raw = {}
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(format_validation_error(exc, key, cls)) from None


def section(raw: Mapping[str, Any], key: str, cls: type[S]) -> S:
    """Parse top-level section `key` of an already-read params dict."""
    return parse_section(cls, raw.get(key), key)


def format_validation_error(exc: ValidationError, prefix: str, cls: type[BaseModel]) -> str:
    """One line per pydantic error, joined: `key: problem (valid: ...)`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        if err["type"] == "extra_forbidden":
            owner = _model_at(cls, err["loc"][:-1])
            valid = ", ".join(owner.model_fields) if owner else "?"
            parts.append(f"{loc}: unknown key (valid keys: {valid})")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            parts.append(f"{loc}: {err['msg']}{shown}")
    return "params.yaml: " + "; ".join(parts)


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = cls.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return None
        if not issubclass(field.annotation, BaseModel):
            return None
        cls = field.annotation
    return cls


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"models": {"hgb": {"lr": 0.1}}}` -> `{"models.hgb.lr": 0.1}`, for tracker params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
