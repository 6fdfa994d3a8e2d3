"""The blend family: a U-Net and a U²-Net in one graph that returns both maps.

Each member is built by its own family's builder and nested as a sub-model (``unet``,
``u2net``), so a blend's weights are its members' weights side by side and
:func:`assemble` makes one from two trained model folders. The graph returns the two
maps as channels; :func:`seg_core.runtime.blend.combine` turns them into one. A blend is
assembled, never trained: its rule is not differentiable and its members train apart.
"""

from __future__ import annotations

from pathlib import Path

import keras

from seg_core.core.config import WEIGHTS_FILE, BlendConfig, U2NetConfig, UNetConfig, load_config
from seg_core.models.registry import build_model, register_builder

MEMBERS = BlendConfig.members
ARCHITECTURE = "unet_u2netp_blend"


class BlendError(ValueError):
    """Two model folders that cannot be blended (wrong families)."""


def _member_map(x: keras.KerasTensor, network: keras.Model, size: int, name: str) -> keras.KerasTensor:
    """``network``'s map of ``x``, which is resized to the network's input and its map back to ``x``'s size."""
    inner = network.input_shape[1]
    if inner == size:
        return network(x)
    small = keras.layers.Resizing(inner, inner, interpolation="bilinear", name=f"to_{name}")(x)
    return keras.layers.Resizing(size, size, interpolation="bilinear", name=f"from_{name}")(network(small))


@register_builder(BlendConfig)
def build_blend(config: BlendConfig, name: str = ARCHITECTURE) -> keras.Model:
    """(N, S, S, 3) RGB in [0, 1] -> (N, S, S, 2): the U-Net's and the U²-Net's probabilities.

    A member whose input is not the blend's sees the input resized to its own (the
    committed blend: the U²-Net at 192 px inside a 256 px input). Members trained on
    photos resized straight to their input see a resized resize here: a small
    difference, measured in the blend's card.
    """
    size = config.input_size
    inputs = keras.Input((size, size, 3), name="image")
    networks = (build_model(config.unet, "unet"), build_model(config.u2net, "u2net"))
    maps = [_member_map(inputs, network, size, key) for key, network in zip(MEMBERS, networks, strict=True)]
    return keras.Model(inputs, keras.layers.Concatenate(dtype="float32", name="maps")(maps), name=name)


def branches(model: keras.Model) -> dict[str, keras.Model]:
    """Each member's map as a model of its own (same layers, same weights), in ``MEMBERS`` order."""
    maps = model.get_layer("maps").input
    return {key: keras.Model(model.input, out, name=key) for key, out in zip(MEMBERS, maps, strict=True)}


def assemble(unet_dir: Path, u2net_dir: Path, **rule) -> tuple[BlendConfig, keras.Model]:
    """The blend of two trained model folders (a U-Net's and a U²-Net's), their weights loaded.

    Args:
        rule: :class:`BlendConfig`'s rule fields (``unsure_ratio``, ``u2net_weight``, ``gate_ratio``, ...).

    Raises:
        BlendError: a folder of another family.
    """
    (_, unet_config), (_, u2net_config) = load_config(unet_dir), load_config(u2net_dir)
    if not isinstance(unet_config, UNetConfig):
        raise BlendError(f"{unet_dir.name} is not a U-Net")
    if not isinstance(u2net_config, U2NetConfig) or u2net_config.minmax_output:
        raise BlendError(f"{u2net_dir.name} is not a U²-Net with plain probabilities (a fine-tuned one)")
    size = max(unet_config.input_size, u2net_config.input_size)
    config = BlendConfig(unet_config, u2net_config, input_size=size, **rule)
    model = build_blend(config)
    model.get_layer("unet").load_weights(unet_dir / WEIGHTS_FILE)
    model.get_layer("u2net").load_weights(u2net_dir / WEIGHTS_FILE)
    return config, model
