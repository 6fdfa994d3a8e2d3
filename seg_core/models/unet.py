"""The U-Net family: building blocks, their assembly, and the registered widths.

The building blocks are separate functions so that variants (wider, shallower,
separable) share one assembly; :mod:`seg_core.models.registry` names them.
"""

from __future__ import annotations

import keras
from keras import layers

from seg_core.core.config import UNetConfig
from seg_core.models.registry import register_builder, register_model


def conv_block(x, filters: int, config: UNetConfig, name: str):
    """Two 3x3 convolutions, each followed by optional batch norm and ReLU."""
    for i in (1, 2):
        # The very first convolution sees 3 colour channels: a separable conv
        # there saves nothing and loses capacity, so it stays dense.
        separable = config.separable and x.shape[-1] > 3
        common = {"padding": "same", "use_bias": not config.batch_norm, "name": f"{name}_conv{i}"}
        if separable:
            conv = layers.SeparableConv2D(filters, 3, pointwise_initializer="he_normal", **common)
        else:
            conv = layers.Conv2D(filters, 3, kernel_initializer="he_normal", **common)
        x = conv(x)
        if config.batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def encoder_block(x, filters: int, config: UNetConfig, name: str):
    """Returns (skip features at this resolution, features pooled to half size)."""
    skip = conv_block(x, filters, config, name)
    return skip, layers.MaxPooling2D(2, name=f"{name}_pool")(skip)


def decoder_block(x, skip, filters: int, config: UNetConfig, name: str):
    """Up-sample by 2 with a transposed convolution, concatenate the skip, convolve."""
    x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_up")(x)
    x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return conv_block(x, filters, config, name)


@register_builder(UNetConfig)
def build_unet(config: UNetConfig, name: str = "unet") -> keras.Model:
    """Assemble a U-Net: encoder, bottleneck, decoder with skip connections.

    Args:
        config: architecture (width, depth, separable convolutions, ...).
        name: the Keras model name.

    Returns:
        ``keras.Model`` with a sigmoid output of the input's spatial size.
    """
    if config.input_size % (2**config.depth):
        raise ValueError(f"input_size {config.input_size} is not divisible by 2**depth")
    inputs = keras.Input((config.input_size, config.input_size, 3), name="image")
    x = inputs
    skips = []
    for level in range(config.depth):
        skip, x = encoder_block(x, config.base_filters * 2**level, config, f"enc{level}")
        skips.append(skip)
    x = conv_block(x, config.base_filters * 2**config.depth, config, "bottleneck")
    if config.dropout:
        x = layers.Dropout(config.dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(config.depth)):
        x = decoder_block(x, skips[level], config.base_filters * 2**level, config, f"dec{level}")
    # float32 output keeps the sigmoid and the loss stable under mixed precision.
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model
def unet_classic(**overrides) -> UNetConfig:
    """The original U-Net width (64 filters, ~31M parameters): a latency reference."""
    return UNetConfig(**{"base_filters": 64, "depth": 4, "batch_norm": False, **overrides})


@register_model
def unet16(**overrides) -> UNetConfig:
    """U-Net with 16 base filters and batch norm (~1.9M parameters)."""
    return UNetConfig(**{"base_filters": 16, **overrides})


@register_model
def unet24(**overrides) -> UNetConfig:
    """U-Net with 24 base filters and batch norm (~4.3M parameters)."""
    return UNetConfig(**{"base_filters": 24, **overrides})


@register_model
def unet8(**overrides) -> UNetConfig:
    """Narrow U-Net with 8 base filters, for latency (~0.5M parameters)."""
    return UNetConfig(**{"base_filters": 8, **overrides})


@register_model
def unet16_separable(**overrides) -> UNetConfig:
    """U-Net with 16 base filters and depthwise-separable convolutions, for latency."""
    return UNetConfig(**{"base_filters": 16, "separable": True, **overrides})
