"""Small in-memory data for unit tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_project.data import Feature, Manifest


def messy_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Numeric, string and boolean features with missing values; a learnable string target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n).round(1),
            "income": rng.lognormal(10, 0.5, n).round(2),
            "city": rng.choice(["paris", "lyon", "nice"], n),
            "member": rng.choice([True, False], n),
        }
    )
    score = (frame["age"] - 40) / 10 + (frame["city"] == "paris") * 1.5
    frame["churn"] = np.where(score + rng.normal(0, 0.5, n) > 0.5, "yes", "no")
    frame.loc[frame.index % 7 == 0, "age"] = np.nan
    frame.loc[frame.index % 11 == 0, "city"] = None
    return frame


def manifest(version: str, source: str = "breast_cancer") -> Manifest:
    """The manifest of a tiny processed dataset whose content hash is `version`."""
    return Manifest(
        source=source,
        target="target",
        task="classification",
        features=[Feature("a", "numeric", "float64")],
        rows={"train": 6, "val": 2, "test": 2},
        classes=None,
        class_balance=None,
        data_version=version,
        seed=0,
    )
