"""etl stage: load, validate and split the data into data/processed/."""

import _bootstrap  # noqa: F401  (this checkout's src/ first on sys.path)

from ml_project.data import require_tracked_location, run_etl
from ml_project.errors import exits_on_user_error
from ml_project.params import DataParams, read_params, section


@exits_on_user_error
def main() -> None:
    params = section(read_params(), "data", DataParams)
    require_tracked_location(params)
    manifest = run_etl(params)
    print(f"etl: {manifest.rows} rows, data version {manifest.data_version}")


if __name__ == "__main__":
    main()
