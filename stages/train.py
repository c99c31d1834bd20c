"""train stage: fit the active model, log its curve, save models/model.skops.

Also runs under `torchrun --nproc_per_node N stages/train.py` (DistributedDataParallel).
"""

import json

import _bootstrap  # noqa: F401  (this checkout's src/ first on sys.path)

from ml_project.errors import exits_on_user_error
from ml_project.training import INFO_PATH, is_main_process, load_train_config, run


@exits_on_user_error
def main() -> None:
    config = load_train_config()
    result = run(config)
    if not is_main_process():  # under torchrun, rank 0 reports
        return
    shown = ", ".join(
        f"{k}={v:.4g}"
        for k, v in result.final.items()
        if k.startswith("val/") or (k.startswith("cv/") and k.endswith("_mean"))
    )
    info = json.loads(INFO_PATH.read_text())
    data = f"data {info['data_label'] or '-'} ({info['data_version']})"
    print(f"train: {config.model}, {data}, {len(result.history)} step(s), {shown}")


if __name__ == "__main__":
    main()
