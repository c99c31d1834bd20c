"""The hyperparameter schemas of the torch models: the one place their defaults are written.

params.yaml shows these defaults, the estimators' `__init__` and the architectures in
`nets.py` take theirs from here, and tests/test_defaults.py fails when any of them drifts.
No torch import: parsing params.yaml must not pay for it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ml_project.models.base import Hyperparams


class TorchParams(Hyperparams):
    """What every torch model shares: the optimisation and the device."""

    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    max_epochs: int = Field(100, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    scheduler: Literal["none", "cosine", "plateau"] = "cosine"
    patience: int = Field(
        10, ge=0, description="epochs without improvement of train.metric; 0: off"
    )
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="held out for early stopping when fit gets no eval set"
    )
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")

    def arch_params(self) -> dict:
        """The architecture's own settings: everything not in TorchParams."""
        shared = set(TorchParams.model_fields)
        return {k: v for k, v in self.model_dump().items() if k not in shared}

    def shared_params(self) -> dict:
        """The estimator's settings: everything in TorchParams."""
        return {k: getattr(self, k) for k in TorchParams.model_fields}


Activation = Literal["relu", "gelu", "silu", "tanh"]
Normalization = Literal["none", "batchnorm", "layernorm"]


class MlpParams(TorchParams):
    hidden_sizes: tuple[int, ...] = Field((128, 64), min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    activation: Activation = "relu"
    normalization: Normalization = "layernorm"


class ResNetParams(TorchParams):
    width: int = Field(64, ge=1)
    n_blocks: int = Field(2, ge=1)
    hidden_factor: float = Field(2.0, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    activation: Activation = "relu"
    normalization: Normalization = "batchnorm"


TORCH_DEFAULTS = TorchParams()
MLP_DEFAULTS = MlpParams()
RESNET_DEFAULTS = ResNetParams()
