"""The fitted feature transform that travels inside every exported model."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from ml_project.data import MISSING_CATEGORY, Manifest

FILLED = "__missing__"  # what the imputer writes for a missing category


class CastFloat32(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Cast numeric features to float32 before anything else.

    ONNX runs the graph in float32. Doing the same in scikit-learn means tree thresholds see
    identical inputs on both sides, which is what makes the export parity check tight.
    Missing values pass through (the imputer after it fills them); infinities do not.
    """

    def fit(self, X, y=None):
        validate_data(self, X, dtype=np.float32, ensure_all_finite="allow-nan")
        return self

    def transform(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=np.float32, ensure_all_finite="allow-nan")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def preprocessor(manifest: Manifest, scale: bool) -> ColumnTransformer:
    """Impute and (optionally) scale numeric columns; impute and one-hot encode categories."""
    numeric = [CastFloat32(), SimpleImputer(strategy="median", keep_empty_features=True)]
    if scale:
        numeric.append(StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(missing_values=MISSING_CATEGORY, strategy="constant", fill_value=FILLED),
        OneHotEncoder(
            categories=encoded_categories(manifest),
            handle_unknown="ignore",
            sparse_output=False,
        ),
    )
    blocks = []
    if manifest.numeric:
        blocks.append(("num", make_pipeline(*numeric), manifest.numeric))
    if manifest.categorical:
        blocks.append(("cat", categorical, manifest.categorical))
    return ColumnTransformer(blocks, remainder="drop", sparse_threshold=0.0)


def encoded_categories(manifest: Manifest) -> list[np.ndarray] | str:
    """The manifest's frequent categories per column (see `data.frequent_categories`), so the
    one-hot width is bounded by `data.max_categories` whatever the cardinality.

    Explicit categories with `handle_unknown="ignore"` rather than scikit-learn's
    `max_categories`: skl2onnx 1.20 cannot convert infrequent-category grouping for our
    single-input encoder, and would put every rare value in the graph if it could. Here a rare
    value encodes as all zeros, like an unseen one, identically in ONNX. A manifest without
    the list (written before it existed, or a test double) gets every category ("auto").
    """
    chosen = getattr(manifest, "categories", None)
    if chosen is None:
        return "auto"
    filled = {MISSING_CATEGORY: FILLED}
    return [
        np.array([filled.get(v, v) for v in chosen[name]], dtype=object)
        for name in manifest.categorical
    ]


def register_onnx_converters() -> None:
    """Teach skl2onnx our CastFloat32 step: it is a plain Cast to float."""
    from onnx import TensorProto
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import FloatTensorType

    def shape(operator):
        operator.outputs[0].type = FloatTensorType(operator.inputs[0].type.shape)

    def convert(scope, operator, container):
        container.add_node(
            "Cast",
            operator.inputs[0].full_name,
            operator.outputs[0].full_name,
            to=TensorProto.FLOAT,
            name=scope.get_unique_operator_name("CastFloat32"),
        )

    update_registered_converter(CastFloat32, "MlProjectCastFloat32", shape, convert)
