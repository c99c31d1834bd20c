"""evaluate stage: test-split metrics and plots into evaluation/."""

import _bootstrap  # noqa: F401  (this checkout's src/ first on sys.path)

from ml_project.data import read_manifest
from ml_project.errors import exits_on_user_error
from ml_project.evaluation import run
from ml_project.persistence import MODEL_PATH, load_native


@exits_on_user_error
def main() -> None:
    scores = run(load_native(MODEL_PATH), read_manifest())
    print("evaluate: " + ", ".join(f"{k}={v:.4g}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
