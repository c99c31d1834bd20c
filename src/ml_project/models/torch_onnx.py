"""skl2onnx converters for the torch estimators (the torch families' `onnx_converters`).

Each estimator exports its own network (`onnx_model`); these converters inline that graph,
renamed, wherever the estimator sits: alone, in a pipeline, or inside scikit-learn's ensembles.
"""

from __future__ import annotations

import numpy as np


def register_converters(estimator=None) -> None:
    """Teach skl2onnx the torch estimators, so they convert alone, in a pipeline, or inside
    scikit-learn's ensembles: their own `onnx_model` graph is inlined, renamed, in place."""
    import onnx
    from onnx import helper
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    from ml_project.models.torch_estimator import TorchClassifier, TorchRegressor

    del estimator  # one registration serves every torch estimator

    def shape_classifier(operator):
        est, n = operator.raw_operator, operator.inputs[0].type.shape[0]
        text = np.asarray(est.classes_).dtype.kind in "OUS"
        operator.outputs[0].type = (StringTensorType if text else Int64TensorType)([n])
        operator.outputs[1].type = FloatTensorType([n, len(est.classes_)])

    def shape_regressor(operator):
        operator.outputs[0].type = FloatTensorType([operator.inputs[0].type.shape[0], 1])

    def inline(scope, operator, container, outputs: dict[str, str]) -> None:
        net = operator.raw_operator.onnx_model(container.target_opset)
        # Appended nodes are not seen by skl2onnx's opset bookkeeping: declare the version.
        container.node_domain_version_pair_sets.add(("", container.target_opset))
        prefix = scope.get_unique_variable_name("torch") + "/"
        names = {"features": operator.inputs[0].full_name, **outputs}

        def rename(name: str) -> str:
            return names.get(name, prefix + name) if name else name

        for init in net.graph.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = rename(init.name)
            container.initializers.append(copy)
        for node in net.graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = prefix + node.name
            copy.input[:] = [rename(i) for i in node.input]
            copy.output[:] = [rename(o) for o in node.output]
            container.nodes.append(copy)

    def convert_classifier(scope, operator, container):
        est = operator.raw_operator
        probabilities = operator.outputs[1].full_name
        inline(scope, operator, container, {"probabilities": probabilities})
        classes = np.asarray(est.classes_)
        classes = (
            classes.astype(object) if classes.dtype.kind in "OUS" else classes.astype(np.int64)
        )
        name = scope.get_unique_variable_name("classes")
        container.initializers.append(onnx.numpy_helper.from_array(classes, name))
        index = scope.get_unique_variable_name("index")
        container.nodes.append(
            helper.make_node(
                "ArgMax",
                [probabilities],
                [index],
                axis=1,
                keepdims=0,
                name=scope.get_unique_operator_name("ArgMax"),
            )
        )
        container.nodes.append(
            helper.make_node(
                "Gather",
                [name, index],
                [operator.outputs[0].full_name],
                axis=0,
                name=scope.get_unique_operator_name("Gather"),
            )
        )

    def convert_regressor(scope, operator, container):
        inline(scope, operator, container, {"variable": operator.outputs[0].full_name})

    update_registered_converter(
        TorchClassifier,
        "MlProjectTorchClassifier",
        shape_classifier,
        convert_classifier,
        options={"zipmap": [False, True], "nocl": [False, True]},
    )
    update_registered_converter(
        TorchRegressor, "MlProjectTorchRegressor", shape_regressor, convert_regressor
    )
