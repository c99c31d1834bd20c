"""PyTorch architectures for tabular data. Each one is an `nn.Module` built from
`(n_inputs, n_outputs, **its params block)`; the trainer knows nothing else about it.

To add an architecture: write its module here (or in a module of your own), its params block
in `torch_params.py`, and register both in `torch_models.py`. Defaults come from the params
block (`torch_params.py`), never written twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ml_project.models.torch_params import MLP_DEFAULTS as _MLP
from ml_project.models.torch_params import RESNET_DEFAULTS as _RESNET

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batchnorm":
        return nn.BatchNorm1d(width)
    if kind == "layernorm":
        return nn.LayerNorm(width)
    return nn.Identity()


class MLP(nn.Module):
    """Linear -> norm -> activation -> dropout, per hidden layer; then a linear head."""

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        hidden_sizes: Sequence[int] = _MLP.hidden_sizes,
        dropout: float = _MLP.dropout,
        activation: str = _MLP.activation,
        normalization: str = _MLP.normalization,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for size in hidden_sizes:
            layers += [
                nn.Linear(width, size),
                _norm(normalization, size),
                ACTIVATIONS[activation](),
                nn.Dropout(dropout),
            ]
            width = size
        layers.append(nn.Linear(width, n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ResidualBlock(nn.Module):
    def __init__(self, width: int, hidden: int, dropout: float, activation: str, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            _norm(norm, width),
            nn.Linear(width, hidden),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(hidden, width),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet(nn.Module):
    """The tabular ResNet of Gorishniy et al. (2021), "Revisiting Deep Learning Models for
    Tabular Data": an input projection, residual blocks (norm, linear, activation, dropout,
    linear), and a normalised head. A strong, simple baseline that trains stably when deep."""

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        width: int = _RESNET.width,
        n_blocks: int = _RESNET.n_blocks,
        hidden_factor: float = _RESNET.hidden_factor,
        dropout: float = _RESNET.dropout,
        activation: str = _RESNET.activation,
        normalization: str = _RESNET.normalization,
    ):
        super().__init__()
        hidden = max(1, int(width * hidden_factor))
        self.project = nn.Linear(n_inputs, width)
        self.blocks = nn.Sequential(
            *(
                ResidualBlock(width, hidden, dropout, activation, normalization)
                for _ in range(n_blocks)
            )
        )
        self.head = nn.Sequential(
            _norm(normalization, width), ACTIVATIONS[activation](), nn.Linear(width, n_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.project(x)))
