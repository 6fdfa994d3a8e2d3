"""The U²-Net family (Qin et al. 2020, "U²-Net: Going Deeper with Nested U-Structure").

``u2netp`` is the small U²-Net that rembg runs; its pretrained weights come from
rembg's ONNX file through :mod:`seg_core.models.onnx_import`. Layer names are the
PyTorch module paths of the reference implementation (``stage1.rebnconvin.conv_s1``,
``side1``, ``outconv``, ...), so a converted weight ``<module>.weight`` lands on the
Keras layer called ``<module>``.

Batch normalisation: the published ONNX export has every BatchNorm folded into the
convolution before it (there is no BatchNormalization node, and each REBNCONV conv
carries a bias). The port therefore uses plain convolutions with bias and no BN layer:
BN layers loaded with identity statistics would reproduce inference too, but in
training mode they would normalise with batch statistics and at once rescale every
channel away from what the folded weights expect. The folded model trains as it infers.

The network takes photos in [0, 1] like every other model here and applies rembg's
normalisation itself (see :class:`RembgNormalise`), so training, inference, export and
quantisation feed it exactly as they feed a U-Net.
"""

from __future__ import annotations

import keras

from seg_core.core.config import U2NetConfig
from seg_core.models.registry import register_builder, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# U²-Netp uses the same width everywhere: 16 channels inside each RSU, 64 between stages.
MID_CHANNELS = 16
OUT_CHANNELS = 64


class RembgNormalise(keras.layers.Layer):
    """rembg's input: the photo divided by its own maximum, then ImageNet mean and std per channel."""

    def call(self, x):
        peak = keras.ops.max(x, axis=(1, 2, 3), keepdims=True)
        scaled = x / keras.ops.maximum(peak, 1e-6)
        mean = keras.ops.convert_to_tensor(IMAGENET_MEAN, dtype=x.dtype)
        std = keras.ops.convert_to_tensor(IMAGENET_STD, dtype=x.dtype)
        return (scaled - mean) / std


class MinMaxRescale(keras.layers.Layer):
    """rembg's output: each map rescaled so that its lowest value is 0 and its highest 1."""

    def call(self, x):
        low = keras.ops.min(x, axis=(1, 2, 3), keepdims=True)
        high = keras.ops.max(x, axis=(1, 2, 3), keepdims=True)
        # rembg divides unguarded; a constant map gives zeros here instead of NaNs.
        return (x - low) / keras.ops.maximum(high - low, 1e-12)


def rebnconv(x: keras.KerasTensor, filters: int, dilation: int, name: str) -> keras.KerasTensor:
    """REBNCONV: 3x3 convolution (BN folded in) then ReLU.

    PyTorch pads by ``dilation`` on every side; for a 3x3 kernel at stride 1 that is
    exactly Keras' symmetric "same" padding.
    """
    # The bias holds the folded BN shift (see the module docstring).
    conv = keras.layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, name=f"{name}.conv_s1")
    return keras.layers.ReLU(name=f"{name}.relu_s1")(conv(x))


def max_pool(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """``MaxPool2d(2, stride=2, ceil_mode=True)``.

    Ceil mode keeps the last, partial window of an odd-sized map. Keras' "same" padding
    at pool 2 / stride 2 pads only at the bottom/right and ignores the padding in the
    max, which gives the same ``ceil(n / 2)`` outputs with the same values.
    """
    return keras.layers.MaxPooling2D(pool_size=2, strides=2, padding="same", name=name)(x)


def upsample_like(src: keras.KerasTensor, target: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """Bilinear resize of ``src`` to ``target``'s spatial size (PyTorch ``align_corners=False``).

    The ONNX graph exports these as ``Resize(mode=linear,
    coordinate_transformation_mode=pytorch_half_pixel)``; Keras' bilinear resize uses
    half-pixel centres without antialiasing, which is the same map whenever the output
    side is larger than 1. The smallest resize target is ceil(input_size / 16), so
    that holds for every input_size >= 17.
    """
    height, width = target.shape[1], target.shape[2]
    if height is None or width is None:
        raise ValueError(f"{name}: the target's spatial size must be static, got {target.shape}")
    return keras.layers.Resizing(height, width, interpolation="bilinear", name=name)(src)


def concat(tensors: list[keras.KerasTensor], name: str) -> keras.KerasTensor:
    """Channel concatenation, in PyTorch's ``torch.cat((a, b), 1)`` order."""
    return keras.layers.Concatenate(axis=-1, name=name)(tensors)


def rsu(x: keras.KerasTensor, height: int, mid: int, out: int, name: str) -> keras.KerasTensor:
    """RSU-L residual U-block (``RSU7``/``RSU6``/``RSU5``/``RSU4`` for ``height`` L = 7..4).

    An input conv, an encoder of L-1 convs with a 2x max pool between consecutive ones,
    a dilation-2 conv at the bottom, a decoder that concatenates each level's skip and
    upsamples back, and a residual add of the input conv.
    """
    hxin = rebnconv(x, out, 1, f"{name}.rebnconvin")

    skips = [rebnconv(hxin, mid, 1, f"{name}.rebnconv1")]
    for level in range(2, height):
        pooled = max_pool(skips[-1], f"{name}.pool{level - 1}")
        skips.append(rebnconv(pooled, mid, 1, f"{name}.rebnconv{level}"))
    hx = rebnconv(skips[-1], mid, 2, f"{name}.rebnconv{height}")

    for level in range(height - 1, 1, -1):
        hx = rebnconv(concat([hx, skips[level - 1]], f"{name}.cat{level}d"), mid, 1, f"{name}.rebnconv{level}d")
        hx = upsample_like(hx, skips[level - 2], f"{name}.up{level}d")
    hx = rebnconv(concat([hx, skips[0]], f"{name}.cat1d"), out, 1, f"{name}.rebnconv1d")
    return keras.layers.Add(name=f"{name}.add")([hx, hxin])


def rsu4f(x: keras.KerasTensor, mid: int, out: int, name: str) -> keras.KerasTensor:
    """RSU-4F: the RSU-4 with dilations 1, 2, 4, 8 in place of pooling (the "F" is for full resolution)."""
    hxin = rebnconv(x, out, 1, f"{name}.rebnconvin")
    hx1 = rebnconv(hxin, mid, 1, f"{name}.rebnconv1")
    hx2 = rebnconv(hx1, mid, 2, f"{name}.rebnconv2")
    hx3 = rebnconv(hx2, mid, 4, f"{name}.rebnconv3")
    hx4 = rebnconv(hx3, mid, 8, f"{name}.rebnconv4")

    hx3d = rebnconv(concat([hx4, hx3], f"{name}.cat3d"), mid, 4, f"{name}.rebnconv3d")
    hx2d = rebnconv(concat([hx3d, hx2], f"{name}.cat2d"), mid, 2, f"{name}.rebnconv2d")
    hx1d = rebnconv(concat([hx2d, hx1], f"{name}.cat1d"), out, 1, f"{name}.rebnconv1d")
    return keras.layers.Add(name=f"{name}.add")([hx1d, hxin])


# RSU height of stages 1..6; 0 marks an RSU-4F. Decoder stage k (k = 5..1) mirrors encoder stage k.
STAGE_HEIGHTS = (7, 6, 5, 4, 0, 0)


def stage(x: keras.KerasTensor, height: int, name: str) -> keras.KerasTensor:
    """One encoder or decoder stage: RSU-``height``, or RSU-4F where ``height`` is 0."""
    if height == 0:
        return rsu4f(x, MID_CHANNELS, OUT_CHANNELS, name)
    return rsu(x, height, MID_CHANNELS, OUT_CHANNELS, name)


@register_builder(U2NetConfig)
def build_u2net(config: U2NetConfig, name: str = "u2netp") -> keras.Model:
    """U²-Netp on (N, S, S, 3) RGB in [0, 1], returning the fused sigmoid map (N, S, S, 1).

    The fused map is ``sigmoid(outconv(concat(d1..d6)))``, the first of the ONNX
    export's seven outputs and the only one rembg uses. The six side maps are computed
    (the fusion needs them) but not exposed as outputs.
    """
    inputs = keras.Input((config.input_size, config.input_size, 3), name="image")
    normalised = RembgNormalise(name="rembg_normalise")(inputs)

    # Encoder: stage k feeds stage k+1 through a 2x max pool; every stage output is a skip.
    encoder = [stage(normalised, STAGE_HEIGHTS[0], "stage1")]
    for k in range(2, 7):
        pooled = max_pool(encoder[-1], f"pool{k - 1}{k}")
        encoder.append(stage(pooled, STAGE_HEIGHTS[k - 1], f"stage{k}"))

    # Decoder: upsample the level below to this level's size and fuse it with the skip.
    decoder = [encoder[5]]  # index 0 holds the level-6 map, the decoder's starting point
    for k in range(5, 0, -1):
        up = upsample_like(decoder[-1], encoder[k - 1], f"up{k + 1}")
        decoder.append(stage(concat([up, encoder[k - 1]], f"cat{k}d"), STAGE_HEIGHTS[k - 1], f"stage{k}d"))
    # Reorder so that levels[k - 1] is the level-k map (hx1d, hx2d, ..., hx5d, hx6).
    levels = decoder[::-1]

    # Side outputs: one 3x3 conv to a logit per level, all brought to full resolution.
    d1 = keras.layers.Conv2D(1, 3, padding="same", name="side1")(levels[0])
    sides = [d1]
    for k in range(2, 7):
        logits = keras.layers.Conv2D(1, 3, padding="same", name=f"side{k}")(levels[k - 1])
        sides.append(upsample_like(logits, d1, f"side{k}.up"))

    fused = keras.layers.Conv2D(1, 1, name="outconv")(concat(sides, "sides.cat"))
    # float32 output keeps the sigmoid and the loss stable under mixed precision.
    prob = keras.layers.Activation("sigmoid", dtype="float32", name="sigmoid")(fused)
    if config.minmax_output:
        prob = MinMaxRescale(dtype="float32", name="minmax")(prob)
    return keras.Model(inputs, prob, name=name)


@register_model
def u2netp(**overrides) -> U2NetConfig:
    """U²-Netp (~1.1M parameters), rembg's generic salient-object network."""
    return U2NetConfig(**overrides)


@register_model
def u2netp_seg(**overrides) -> U2NetConfig:
    """U²-Netp as a butterfly segmenter: the same network to fine-tune from ``u2netp``'s weights.

    Probabilities as the sigmoid gives them (a trained map needs no rescaling), the
    bilinear input of every model trained here, and the second look of the U-Nets.
    """
    return U2NetConfig(**{"minmax_output": False, "resample": "bilinear", "second_look": True, **overrides})
