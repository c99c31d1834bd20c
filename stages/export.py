"""export stage: skops, ONNX and TorchScript into export/model/, each checked for parity."""

import _bootstrap  # noqa: F401  (this checkout's src/ first on sys.path)

from ml_project.data import read_manifest
from ml_project.errors import exits_on_user_error
from ml_project.export import run
from ml_project.params import ExportParams, read_params, section
from ml_project.persistence import MODEL_PATH


@exits_on_user_error
def main() -> None:
    results = run(MODEL_PATH, read_manifest(), section(read_params(), "export", ExportParams))
    shown = [
        f"{r.format} skipped ({r.skipped})"
        if r.skipped
        else f"{r.format} max|diff|={r.max_abs_diff:.3g}"
        for r in results
    ]
    print("export: " + ", ".join(shown))


if __name__ == "__main__":
    main()
