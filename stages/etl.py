"""etl stage: load, validate and split the data into data/processed/."""

from ml_project.data import run_etl
from ml_project.errors import exits_on_user_error
from ml_project.params import DataParams, read_params, section


@exits_on_user_error
def main() -> None:
    manifest = run_etl(section(read_params(), "data", DataParams))
    print(f"etl: {manifest.rows} rows, data version {manifest.data_version}")


if __name__ == "__main__":
    main()
