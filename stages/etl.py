"""etl stage: load, apply etl.steps, validate and split the data into data/processed/."""

import _bootstrap  # noqa: F401  (this checkout's src/ first on sys.path)

from ml_project.data import require_tracked_location, run_etl
from ml_project.errors import exits_on_user_error
from ml_project.params import DataParams, EtlParams, read_params, section
from ml_project.versions import label_for


@exits_on_user_error
def main() -> None:
    raw = read_params()
    params = section(raw, "data", DataParams)
    require_tracked_location(params)
    manifest = run_etl(params, etl=section(raw, "etl", EtlParams))
    label = label_for(manifest, {"data": raw.get("data"), "etl": raw.get("etl")}) or "-"
    rows = " / ".join(f"{k} {v}" for k, v in manifest.rows.items())
    print(
        f"etl: {manifest.source}, task {manifest.task} ({manifest.task_reason}), {rows} rows, "
        f"{len(manifest.features)} features, data version {label} ({manifest.data_version})"
    )


if __name__ == "__main__":
    main()
