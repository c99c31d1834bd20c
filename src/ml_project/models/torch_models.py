"""PyTorch models in the registry: one params block and one architecture each.

Importing this module does not import torch: the architectures (`nets.py`) and the estimators
(`torch_estimator.py`) load only when a torch model is built or loaded, and the ONNX
converters (`torch_onnx.py`) import torch and skl2onnx only when they register, so the
scikit-learn models and the ETL stage never pay for torch.

Adding an architecture is one `nn.Module` (see `nets.py`) plus one params block
(`torch_params.py` and params.yaml) and one `register_torch` line here; the training loop,
early stopping, checkpoints, export and DDP come with it.
"""

from __future__ import annotations

import importlib

from ml_project.models.base import ModelSpec, register
from ml_project.models.torch_onnx import register_converters
from ml_project.models.torch_params import MlpParams, ResNetParams, TorchParams

ESTIMATOR_TYPES = (
    "ml_project.models.torch_estimator.TorchClassifier",
    "ml_project.models.torch_estimator.TorchRegressor",
)


def _torchscript(estimator):
    return estimator.inference_module()


def register_torch(
    name: str, params: type[TorchParams], module: str, description: str
) -> ModelSpec:
    """Register an architecture: `models.<name>` in params.yaml builds `module`
    ("package.module:Class", imported when the model is first built)."""
    module_name, attr = module.split(":")

    def build(task, hp: TorchParams, seed, metric):
        from ml_project.models.torch_estimator import estimator_for

        arch = getattr(importlib.import_module(module_name), attr)
        return estimator_for(task)(
            arch=arch,
            arch_params=hp.arch_params(),
            seed=seed,
            metric=metric.name,
            **hp.shared_params(),
        )

    return register(
        ModelSpec(
            name,
            params,
            build,
            per_epoch=True,
            onnx_converters=register_converters,
            torchscript=_torchscript,
            description=description,
            # the estimator, and the architecture class it holds (skops stores the class)
            trusted_types=(*ESTIMATOR_TYPES, f"{module_name}.{attr}"),
        )
    )


register_torch("mlp", MlpParams, "ml_project.models.nets:MLP", "multilayer perceptron")
register_torch("resnet", ResNetParams, "ml_project.models.nets:ResNet", "tabular ResNet")
