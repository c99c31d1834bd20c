"""evaluate stage: test-split metrics and plots into evaluation/, attached to the train run."""

import _bootstrap  # noqa: F401  (this checkout's src/ first on sys.path)

from ml_project.errors import exits_on_user_error
from ml_project.evaluation import run_tracked
from ml_project.params import TrackingParams, read_params, section


@exits_on_user_error
def main() -> None:
    scores = run_tracked(section(read_params(), "tracking", TrackingParams))
    print("evaluate: " + ", ".join(f"{k}={v:.4g}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
