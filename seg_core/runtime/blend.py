"""How a blend's two maps become one: the U-Net's, unless it is unsure, then a mean leaning on the U²-Net.

The U-Net member knows Leeds photos best and is quick; where it meets colours or species
Leeds lacks it grows unsure (a wide band of middling probabilities around little or no
butterfly). So the U²-Net member, fine-tuned from generic salient-object weights, only
counts on photos where the U-Net's unsure pixels (probability between 0.1 and 0.9) exceed
``unsure_ratio`` of its mask's area; runtimes that can skip it there do (see
:class:`seg_core.runtime.engines.BlendRuntime`). On those photos the map is a weighted mean
whose U²-Net share rises from ``u2net_weight`` to ``gate_weight`` when the U-Net's mask is
under ``gate_ratio`` of the U²-Net's area. Chosen on the validation photos, as taken and
recoloured (see the blend's card and ``recipes/generalisation/``).
"""

from __future__ import annotations

import numpy as np

from seg_core.core.config import BlendConfig

#: Probabilities strictly between these are "unsure".
UNSURE_BAND = (0.1, 0.9)


def unsure(unet_maps: np.ndarray, config: BlendConfig) -> np.ndarray:
    """Per map of a batch (N, S, S): True where the U-Net is unsure enough for the U²-Net to count."""
    low, high = UNSURE_BAND
    band = ((unet_maps > low) & (unet_maps < high)).mean(axis=(1, 2))
    area = (unet_maps >= 0.5).mean(axis=(1, 2))
    # An empty mask with any doubt at all is as unsure as a map can be.
    return band > config.unsure_ratio * area


def u2net_shares(maps: np.ndarray, config: BlendConfig) -> np.ndarray:
    """The U²-Net's share for each photo of a batch of member maps (N, S, S, 2)."""
    areas = (maps >= 0.5).mean(axis=(1, 2))
    gated = areas[:, 0] < config.gate_ratio * areas[:, 1]
    share = np.where(gated, config.gate_weight, config.u2net_weight)
    return np.where(unsure(maps[..., 0], config), share, 0.0).astype(np.float32)


def combine(maps: np.ndarray, config: BlendConfig) -> np.ndarray:
    """One probability map per photo (N, S, S) from a blend's member maps (N, S, S, 2)."""
    share = u2net_shares(maps, config)[:, None, None]
    return (1.0 - share) * maps[..., 0] + share * maps[..., 1]
