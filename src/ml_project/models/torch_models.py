"""PyTorch models in the registry: one params block and one architecture each.

Importing this module does not import torch: the architectures (`nets.py`) and the trainer
(`torch_estimator.py`) load only when a torch model is built or loaded, so the scikit-learn
models and the ETL stage never pay for torch.

Adding an architecture is one `nn.Module` (see `nets.py`) plus one params block here and in
params.yaml; the training loop, early stopping, checkpoints, export and DDP come with it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ml_project.models.base import Hyperparams, ModelSpec, register


class TorchParams(Hyperparams):
    """What every torch model shares: the optimisation and the device."""

    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, ge=1)
    max_epochs: int = Field(50, ge=1)
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


# registry name -> nn.Module class, as "module:attribute" so that torch loads lazily.
ARCHITECTURES: dict[str, str] = {}


def register_torch(name: str, params: type[TorchParams], module: str, description: str) -> None:
    """Register an architecture: `models.<name>` in params.yaml builds `module`."""
    ARCHITECTURES[name] = module

    def build(task, hp: TorchParams, seed, metric):
        from ml_project.models.torch_estimator import estimator_for

        shared = {k: getattr(hp, k) for k in TorchParams.model_fields}
        return estimator_for(task)(
            arch=name, arch_params=hp.arch_params(), seed=seed, metric=metric.name, **shared
        )

    register(
        ModelSpec(
            name,
            params,
            build,
            per_epoch=True,
            description=description,
            trusted_types=(
                "ml_project.models.torch_estimator.TorchClassifier",
                "ml_project.models.torch_estimator.TorchRegressor",
            ),
        )
    )


register_torch("mlp", MlpParams, "ml_project.models.nets:MLP", "multilayer perceptron")
register_torch("resnet", ResNetParams, "ml_project.models.nets:ResNet", "tabular ResNet")
