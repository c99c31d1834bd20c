"""The torch estimators and their loop: contract, determinism, early stopping, resume, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import StandardScaler

from ml_project.errors import ParamsError, UserError
from ml_project.models import parse_models
from ml_project.models.nets import MLP as MLPNet
from ml_project.models.nets import ResNet
from ml_project.models.torch_dist import resolve_device
from ml_project.models.torch_estimator import TorchClassifier, TorchRegressor
from ml_project.models.torch_loop import batches as _batches

MLP = {"hidden_sizes": [32, 16], "dropout": 0.1, "activation": "relu", "normalization": "layernorm"}


def data(task: str):
    X, y = (load_breast_cancer if task == "classification" else load_diabetes)(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return X[:300], y[:300], X[300:400], y[300:400]


def make(task: str, **kw):
    cls = TorchClassifier if task == "classification" else TorchRegressor
    metric = "f1" if task == "classification" else "rmse"
    defaults = dict(
        arch=MLPNet, arch_params=MLP, max_epochs=6, batch_size=32, seed=3, metric=metric
    )
    return cls(**{**defaults, **kw})


def test_estimator_contract_clone_and_sklearn_cv():
    est = make("classification", lr=0.01)
    params = est.get_params()
    assert params["lr"] == 0.01 and params["arch_params"] == MLP
    copy = clone(est).set_params(max_epochs=3)
    assert copy.max_epochs == 3 and est.max_epochs == 6 and not hasattr(copy, "module_")
    X, y, _, _ = data("classification")
    scores = cross_val_score(copy, X, y, cv=2, scoring="accuracy")
    assert scores.shape == (2,) and scores.min() > 0.8
    assert copy.fit(X, y) is copy and copy.n_epochs_ <= 3


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_same_seed_gives_identical_epoch_metrics(task):
    X, y, Xv, yv = data(task)
    first = make(task).fit(X, y, eval_set=(Xv, yv))
    second = make(task).fit(X, y, eval_set=(Xv, yv))
    assert len(first.history_) == 6
    assert first.history_ == second.history_  # exactly equal, not approximately
    other = make(task, seed=4).fit(X, y, eval_set=(Xv, yv))
    assert other.history_ != first.history_


def test_early_stopping_stops_and_restores_the_best_epoch():
    X, y, Xv, yv = data("regression")
    est = make("regression", lr=0.05, max_epochs=60, patience=3, scheduler="none")
    est.fit(X, y, eval_set=(Xv, yv))
    rmse = [row["val/rmse"] for row in est.history_]
    assert est.n_epochs_ < 60  # stopped early
    assert est.best_epoch_ == int(np.argmin(rmse)) and est.n_epochs_ == est.best_epoch_ + 4
    final = float(np.sqrt(np.mean((est.predict(Xv) - yv) ** 2)))
    assert final == pytest.approx(rmse[est.best_epoch_], rel=1e-6)  # the best weights, restored


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, task):
    X, y, Xv, yv = data(task)
    ckpt = tmp_path / "ck.pt"
    whole = make(task, max_epochs=8).fit(X, y, eval_set=(Xv, yv), checkpoint=ckpt)
    assert not ckpt.exists()  # removed once training completed

    def stop_at_4(row, epoch):
        if epoch == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        make(task, max_epochs=8).fit(
            X, y, eval_set=(Xv, yv), callbacks=[stop_at_4], checkpoint=ckpt
        )
    assert torch.load(ckpt, weights_only=True)["epoch"] == 3
    seen = []
    resumed = make(task, max_epochs=8).fit(
        X, y, eval_set=(Xv, yv), checkpoint=ckpt, callbacks=[lambda r, e: seen.append(e)]
    )
    assert seen == list(range(8))  # history replayed (0-3), then epochs 4-7 trained
    assert resumed.history_ == whole.history_
    np.testing.assert_array_equal(resumed.predict(Xv), whole.predict(Xv))


def test_checkpoint_of_another_configuration_is_ignored(tmp_path, capsys):
    X, y, Xv, yv = data("classification")
    ckpt = tmp_path / "ck.pt"
    with pytest.raises(Interrupt):
        make("classification").fit(
            X, y, eval_set=(Xv, yv), checkpoint=ckpt, callbacks=[_raise_at(2)]
        )
    fresh = make("classification", lr=0.002).fit(X, y, eval_set=(Xv, yv), checkpoint=ckpt)
    assert "belongs to another configuration" in capsys.readouterr().err
    assert fresh.n_epochs_ == 6 and not ckpt.exists()


def _raise_at(at: int):
    def callback(row, epoch):
        if epoch == at:
            raise Interrupt

    return callback


def test_batches_never_leave_a_single_row():
    assert _batches(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert _batches(9, 4) == [(0, 4), (4, 9)]
    assert _batches(1, 4) == [(0, 1)]


def test_batchnorm_resnet_trains_when_a_batch_would_hold_one_row():
    X, y, Xv, yv = data("classification")
    est = make("classification", arch=ResNet, arch_params={}, batch_size=299, max_epochs=2)
    est.fit(X[:300], y[:300], eval_set=(Xv, yv))
    assert est.n_epochs_ == 2


def test_device_auto_is_cpu_here_and_a_missing_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(
        UserError, match=r"device 'cuda' requested but no CUDA GPU.*valid: auto, cpu"
    ):
        resolve_device("cuda")


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"device": "gpu"}, r"models\.mlp\.device: .*"),
        ({"hidden_sizes": []}, r"models\.mlp\.hidden_sizes: .*at least 1"),
        ({"optimizer": "lbfgs"}, r"models\.mlp\.optimizer: .*'adamw', 'adam' or 'sgd'"),
        ({"layers": 3}, r"models\.mlp\.layers: unknown key \(valid keys: .*hidden_sizes"),
    ],
)
def test_bad_torch_params_name_the_key(block, message):
    with pytest.raises(ParamsError, match=message):
        parse_models({"mlp": block}, "mlp")
