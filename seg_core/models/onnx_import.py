"""Pretrained U²-Net weights from an ONNX file (rembg's ``u2netp.onnx``), checked against the ONNX graph.

The export folded each BatchNorm into its convolution, and the folded tensors lost their
PyTorch names (they are called ``"1967"``, ``"1968"``, ...); only ``side1..6`` and
``outconv`` kept theirs. The names are recovered from the graph itself: walking back
from the fused output, the Keras model and the ONNX graph are traversed side by side
(Conv <-> Conv2D, Relu <-> ReLU, Concat <-> Concatenate in input order, ...), which pairs
every ONNX Conv with the Keras layer at the same place and checks on the way that the
two graphs have the same wiring, kernel sizes, dilations, pooling and resize modes.
The paired tensors are then named ``<keras layer>.weight`` / ``.bias`` (the PyTorch
names) and assigned by name, with an error for any tensor or weight left over.

Needs the ``onnx`` package (``requirements-dev.txt``); :func:`onnx_reference` runs the
ONNX graph with OpenVINO at FP32 to check a port (OpenVINO's default on a CPU with
BF16 would differ from it by up to 0.1).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import onnx
from onnx import numpy_helper
from PIL import Image

from seg_core.models.u2net import IMAGENET_MEAN, IMAGENET_STD, RembgNormalise

# Keras layer class -> the ONNX op it was exported as (the sigmoid Activation is handled apart).
_ONNX_OP: dict[type[keras.Layer], str] = {
    keras.layers.Conv2D: "Conv",
    keras.layers.ReLU: "Relu",
    keras.layers.MaxPooling2D: "MaxPool",
    keras.layers.Resizing: "Resize",
    keras.layers.Concatenate: "Concat",
    keras.layers.Add: "Add",
}
# Ops whose first input is the only data input: Conv's others are its initialisers,
# Resize's the target-shape subgraph (Shape/Gather/Concat of the tensor it resizes to).
_SINGLE_INPUT_OPS = {"Conv", "Relu", "MaxPool", "Resize", "Sigmoid"}


class ConversionError(RuntimeError):
    """The ONNX graph does not match the Keras model, or a weight has no counterpart."""


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _onnx_op(layer: keras.Layer) -> str:
    if isinstance(layer, keras.layers.Activation) and layer.activation is keras.activations.sigmoid:
        return "Sigmoid"
    op = _ONNX_OP.get(type(layer))
    if op is not None:
        return op
    raise ConversionError(f"layer {layer.name!r} ({type(layer).__name__}) has no ONNX counterpart here")


def _check_node(layer: keras.Layer, node: onnx.NodeProto) -> None:
    """Check the attributes that decide numerics: a wrong one would otherwise only show as a diff."""
    attrs = _attributes(node)
    if node.op_type == "Conv":
        size, dilation = layer.kernel_size, layer.dilation_rate
        if layer.padding != "same" and size != (1, 1):
            raise ConversionError(f"{layer.name}: expected 'same' padding, got {layer.padding!r}")
        # Keras "same" at stride 1 pads dilation * (k - 1) / 2 on every side, as PyTorch's padding=dilation does.
        pads = [dilation[0] * (size[0] - 1) // 2, dilation[1] * (size[1] - 1) // 2] * 2
        expected = {
            "kernel_shape": list(size),
            "dilations": list(dilation),
            "strides": list(layer.strides),
            "pads": pads,
            "group": 1,
        }
        defaults = {"dilations": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0], "group": 1}
        actual = {key: attrs.get(key, defaults.get(key)) for key in expected}
        if actual != expected:
            raise ConversionError(f"{layer.name}: ONNX {node.name} has {actual}, the Keras layer needs {expected}")
    elif node.op_type == "MaxPool":
        expected = {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}
        if (
            any(attrs.get(key) != value for key, value in expected.items())
            or any(attrs.get("pads", []))
            or (tuple(layer.pool_size), tuple(layer.strides), layer.padding) != ((2, 2), (2, 2), "same")
        ):
            raise ConversionError(f"{layer.name}: ONNX {node.name} has {attrs}, expected {expected} and no pads")
    elif node.op_type == "Resize":
        mode, transform = attrs.get("mode"), attrs.get("coordinate_transformation_mode")
        if (mode, transform, layer.interpolation) != (b"linear", b"pytorch_half_pixel", "bilinear"):
            raise ConversionError(f"{layer.name}: ONNX {node.name} resizes with {mode}/{transform}")
    elif node.op_type == "Concat" and attrs.get("axis") != 1:
        raise ConversionError(f"{layer.name}: ONNX {node.name} concatenates on axis {attrs.get('axis')}")


def match_conv_layers(model: keras.Model, graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Pair every Keras Conv2D (by layer name) with the ONNX Conv node at the same place in the graph.

    Both graphs are walked back from their first output; each Keras tensor is bound to
    the ONNX tensor it must equal, and a tensor reached twice (a skip connection) must
    be bound to the same ONNX tensor both times.
    """
    producers = {out: node for node in graph.node for out in node.output}
    graph_inputs = {i.name for i in graph.input}
    bound: dict[int, str] = {}  # id(Keras tensor) -> ONNX tensor name
    bound_onnx: dict[str, int] = {}  # and back: the pairing must be one-to-one
    convs: dict[str, onnx.NodeProto] = {}

    stack = [(model.outputs[0], graph.output[0].name)]
    while stack:
        tensor, onnx_name = stack.pop()
        if id(tensor) in bound or onnx_name in bound_onnx:
            if bound.get(id(tensor)) != onnx_name or bound_onnx.get(onnx_name) != id(tensor):
                raise ConversionError(
                    f"Keras tensor {tensor.name} and ONNX tensor {onnx_name} are each reached from two different places"
                )
            continue  # a skip connection, already expanded
        bound[id(tensor)] = onnx_name
        bound_onnx[onnx_name] = id(tensor)

        # Keras 3 has no public accessor for the layer call that produced a symbolic tensor;
        # _keras_history (layer, call index) is what the functional API itself walks.
        layer = tensor._keras_history.operation
        # The ONNX graph starts from rembg's normalised input, which the Keras model computes itself.
        if isinstance(layer, keras.layers.InputLayer | RembgNormalise):
            if onnx_name not in graph_inputs:
                raise ConversionError(f"Keras input reached ONNX {onnx_name}, which is not a graph input")
            continue
        node = producers.get(onnx_name)
        op = _onnx_op(layer)
        if node is None or node.op_type != op:
            found = node.op_type if node is not None else "a graph input or initialiser"
            raise ConversionError(f"layer {layer.name!r} should be an ONNX {op}; {onnx_name} comes from {found}")
        _check_node(layer, node)
        if op == "Conv":
            convs[layer.name] = node

        keras_inputs = layer._inbound_nodes[tensor._keras_history.node_index].input_tensors
        onnx_inputs = list(node.input[:1]) if op in _SINGLE_INPUT_OPS else list(node.input)
        if len(keras_inputs) != len(onnx_inputs):
            raise ConversionError(
                f"layer {layer.name!r} has {len(keras_inputs)} inputs, ONNX {node.name} has {len(onnx_inputs)}"
            )
        stack.extend(zip(keras_inputs, onnx_inputs, strict=True))
    return convs


def onnx_state_dict(model: keras.Model, onnx_path: str | Path) -> dict[str, np.ndarray]:
    """The ONNX initialisers under their PyTorch names (``<module>.weight`` OIHW, ``<module>.bias``).

    Folded tensors take the name of the Keras layer they were matched to; tensors that
    kept a name in the export must agree with it. Raises if any initialiser is not used
    by exactly one matched Conv.
    """
    graph = onnx.load(str(onnx_path)).graph
    initialisers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state: dict[str, np.ndarray] = {}
    used: set[str] = set()
    for layer_name, node in match_conv_layers(model, graph).items():
        if len(node.input) != 3:
            raise ConversionError(f"ONNX {node.name} ({layer_name}) has no bias input")
        for tensor_name, suffix in zip(node.input[1:], ("weight", "bias"), strict=True):
            torch_name = f"{layer_name}.{suffix}"
            if not tensor_name.isdigit() and tensor_name != torch_name:
                raise ConversionError(f"ONNX tensor {tensor_name!r} landed on {torch_name!r}")
            if tensor_name in used:
                raise ConversionError(f"ONNX tensor {tensor_name!r} is shared by two convolutions")
            used.add(tensor_name)
            state[torch_name] = initialisers[tensor_name]
    unused = sorted(set(initialisers) - used)
    if unused:
        raise ConversionError(f"{len(unused)} ONNX initialisers are not used by any matched conv: {unused[:10]}")
    return state


def load_onnx_weights(model: keras.Model, onnx_path: str | Path) -> None:
    """Assign every weight of ``model`` (a U²-Net built without ``minmax_output``) from the ONNX file, by name.

    Conv kernels go from PyTorch's OIHW to Keras' HWIO. Raises ``ConversionError`` when
    the graphs differ, a layer finds no tensor, a tensor finds no layer, or a shape
    disagrees; nothing is skipped silently.
    """
    state = onnx_state_dict(model, onnx_path)
    remaining = dict(state)
    for layer in model.layers:
        if not layer.weights:
            continue
        if not isinstance(layer, keras.layers.Conv2D):
            raise ConversionError(f"layer {layer.name!r} ({type(layer).__name__}) has weights but is not a Conv2D")
        try:
            kernel = remaining.pop(f"{layer.name}.weight").transpose(2, 3, 1, 0)  # OIHW -> HWIO
            bias = remaining.pop(f"{layer.name}.bias")
        except KeyError as missing:
            raise ConversionError(f"no ONNX tensor for Keras weight {missing.args[0]!r}") from None
        for variable, value in zip(layer.weights, (kernel, bias), strict=True):
            if tuple(variable.shape) != value.shape:
                raise ConversionError(f"{variable.path}: Keras shape {tuple(variable.shape)}, ONNX {value.shape}")
        layer.set_weights([kernel, bias])
    if remaining:
        raise ConversionError(f"{len(remaining)} ONNX tensors found no Keras weight: {sorted(remaining)[:10]}")


def rembg_input(photo: np.ndarray, size: int) -> np.ndarray:
    """rembg's view of a photo: LANCZOS to (size, size), uint8 (H, W, 3); the networks divide it by 255 or its max."""
    return np.asarray(Image.fromarray(photo).resize((size, size), Image.Resampling.LANCZOS))


def onnx_reference(onnx_path: str | Path, views: list[np.ndarray]) -> list[np.ndarray]:
    """The ONNX graph's first output (N=1 each) for rembg-resized uint8 views, run by OpenVINO at FP32.

    rembg's preprocessing: divide by the view's maximum, ImageNet mean and std, NCHW.
    """
    import openvino as ov

    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    outputs = []
    for view in views:
        scaled = view / max(float(view.max()), 1e-6)
        normalised = ((scaled - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)).astype(np.float32)
        outputs.append(np.squeeze(compiled(normalised.transpose(2, 0, 1)[None])[0]))
    return outputs


def max_differences(model: keras.Model, onnx_path: str | Path, photos: list[np.ndarray]) -> list[float]:
    """Per photo, the largest absolute difference between ``model`` (no min-max output) and the ONNX graph."""
    size = model.input_shape[1]
    views = [rembg_input(photo, size) for photo in photos]
    reference = onnx_reference(onnx_path, views)
    ours = model.predict(np.stack(views).astype(np.float32) / 255.0, verbose=0)[..., 0]
    return [float(np.max(np.abs(a - b))) for a, b in zip(ours, reference, strict=True)]


#: The notice a folder of derived weights carries (Apache-2.0 asks for it).
LICENCE_NOTICE = """\
The weights in this folder are derived from U²-Netp (Xuebin Qin et al., "U²-Net: Going Deeper
with Nested U-Structure for Salient Object Detection", Pattern Recognition 2020), trained by its
authors on DUTS-TR, as distributed by the rembg project (u2netp.onnx, md5 {md5}).
Source: https://github.com/xuebinqin/U-2-Net ; licensed under the Apache License, Version 2.0
(https://www.apache.org/licenses/LICENSE-2.0). Converted to Keras by Wingmask
(seg_core/models/onnx_import.py): BatchNorm folded as in the ONNX export, no other change{changes}.
"""


def file_md5(path: str | Path) -> str:
    """Hex MD5 of a file (rembg pins its model files by MD5)."""
    import hashlib

    return hashlib.md5(Path(path).read_bytes()).hexdigest()
