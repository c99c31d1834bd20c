"""Cost of one training epoch through the template vs a minimal hand-written PyTorch loop.

Same network (nets.MLP), data, batch size, optimizer and LR schedule on both sides. The
template side is `TorchClassifier.fit` with everything on: val metrics each epoch, early-
stopping bookkeeping, a checkpoint per epoch, the progress bar, and the tracker fan-out with
dvclive, MLflow (SQLite) and W&B (offline) all enabled. Rounds alternate between the two so
machine noise hits both; the first epoch of each run (warm-up) is dropped.

    python benchmarks/torch_epoch.py [--rows 20000] [--epochs 8] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from ml_project.models.nets import MLP  # noqa: E402
from ml_project.models.torch_estimator import TorchClassifier  # noqa: E402
from ml_project.params import TrackingParams  # noqa: E402
from ml_project.tracking import RunInfo, open_trackers  # noqa: E402

ARCH = {
    "hidden_sizes": [128, 64],
    "dropout": 0.1,
    "activation": "relu",
    "normalization": "layernorm",
}
LR, WD, BATCH = 1e-3, 1e-4, 64


def make_data(rows: int, features: int = 32):
    X, y = make_classification(rows, features, n_informative=16, random_state=0)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    cut = int(rows * 0.8)
    return X[:cut], y[:cut], X[cut:], y[cut:]


def minimal_loop(X, y, Xv, yv, epochs: int, seed: int) -> list[float]:
    """What one writes by hand: shuffle, slice, forward, loss, backward, step; val loss."""
    torch.manual_seed(seed)
    net = MLP(X.shape[1], 2, **ARCH)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WD)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    Xvt, yvt = torch.from_numpy(Xv), torch.from_numpy(yv.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    stamps = [time.perf_counter()]
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(Xt), generator=gen)
        for start in range(0, len(Xt), BATCH):
            idx = order[start : start + BATCH]
            loss = torch.nn.functional.cross_entropy(net(Xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            val_loss = torch.nn.functional.cross_entropy(net(Xvt), yvt).item()
        assert np.isfinite(val_loss)
        stamps.append(time.perf_counter())
    return np.diff(stamps).tolist()


def template_fit(X, y, Xv, yv, epochs: int, seed: int, workdir: Path) -> tuple[list[float], float]:
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", DVC_ROOT=str(workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    tracking = TrackingParams()  # dvclive + MLflow + W&B, as in params.yaml
    start = time.perf_counter()
    with open_trackers(tracking, RunInfo(stage="train", root=workdir)) as trackers:
        opened = time.perf_counter() - start
        stamps = [time.perf_counter()]

        def on_epoch(row, epoch):
            trackers.log_metrics(row, epoch)
            stamps.append(time.perf_counter())

        est = TorchClassifier(
            arch=MLP,
            arch_params=ARCH,
            lr=LR,
            weight_decay=WD,
            batch_size=BATCH,
            max_epochs=epochs,
            patience=epochs,
            scheduler="cosine",
            seed=seed,
            metric="f1",
            device="cpu",
            progress=True,
        )
        est.fit(X, y, eval_set=(Xv, yv), callbacks=[on_epoch], checkpoint=workdir / "ck.pt")
    assert est.n_epochs_ == epochs and trackers.names == [], "trackers must all have closed"
    return np.diff(stamps).tolist(), opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X, y, Xv, yv = make_data(args.rows)
    base, ours, opens = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            base += minimal_loop(X, y, Xv, yv, args.epochs, seed=r)[1:]
            epochs, opened = template_fit(X, y, Xv, yv, args.epochs, r, Path(tmp) / f"run{r}")
            ours += epochs[1:]
            opens.append(opened)
    b, t = statistics.median(base), statistics.median(ours)
    batches = -(-len(X) // BATCH)
    print(
        f"\n{len(X)} train rows, {len(Xv)} val rows, batch {BATCH} ({batches} batches/epoch), "
        f"MLP {ARCH['hidden_sizes']}, {args.rounds} rounds x {args.epochs - 1} timed epochs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print("| loop | median epoch (s) | mean epoch (s) | overhead per epoch (ms) | ratio |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| minimal hand-written loop (baseline) | {b:.4f} | {statistics.mean(base):.4f} "
        f"| +0.0 | 1.000x |"
    )
    print(
        f"| template: TorchClassifier.fit + dvclive + MLflow + W&B | {t:.4f} "
        f"| {statistics.mean(ours):.4f} | {1000 * (t - b):+.1f} | {t / b:.3f}x |"
    )
    print(f"\nOne-off tracker start (not per epoch): {statistics.median(opens):.2f} s median")


if __name__ == "__main__":
    main()
