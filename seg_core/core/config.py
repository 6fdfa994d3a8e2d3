"""Model configuration saved beside the weights so any tool can rebuild a model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

INPUT_SIZE = 256
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "card.json"
HISTORY_FILE = "history.csv"
#: Licence notice of weights derived from someone else's (pretrained ones), carried by every derived model.
NOTICE_FILE = "NOTICE"


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a U-Net's graph (not its weights).

    Attributes:
        base_filters: filters of the first encoder level; each level doubles it.
        depth: number of down-sampling steps (the bottleneck is at ``depth``).
        separable: use depthwise-separable convolutions (cheaper, for latency).
        batch_norm: batch normalisation after each convolution.
        dropout: dropout rate in the bottleneck (0 disables it).
        input_size: side of the square input the network sees.
    """

    base_filters: int = 16
    depth: int = 4
    separable: bool = False
    batch_norm: bool = True
    dropout: float = 0.0
    input_size: int = INPUT_SIZE

    #: The key of this family's section in ``config.json``.
    family: ClassVar[str] = "unet"
    label: ClassVar[str] = "U-Net"
    #: Every U-Net here was tuned with the second look on (see :mod:`seg_core.runtime.second_look`).
    second_look: ClassVar[bool] = True
    #: The filter that resizes photos to the input (:func:`seg_core.core.imaging.preprocess`).
    resample: ClassVar[str] = "bilinear"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        return cls(**_known_fields(cls, data))


@dataclasses.dataclass(frozen=True)
class U2NetConfig:
    """Everything needed to rebuild a U²-Net's graph (not its weights).

    The network takes photos in [0, 1] like the U-Nets and normalises them itself
    the way its pretrained weights expect (rembg's: divided by the photo's maximum,
    then ImageNet mean and standard deviation), so every tool feeds it alike.

    Attributes:
        input_size: side of the square input (rembg's 320).
        minmax_output: rescale each output map to span [0, 1], as rembg does; the
            zero-shot model keeps it so that its scores are rembg's, fine-tuned ones drop it.
        second_look: take the second, closer look at small butterflies (rembg has none).
        resample: the filter that resizes photos to the input: rembg's LANCZOS for the
            zero-shot model (bilinear, ours, gave other masks on 0.6% of the sample photos' pixels).
    """

    input_size: int = 320
    minmax_output: bool = True
    second_look: bool = False
    resample: str = "lanczos"

    family: ClassVar[str] = "u2net"
    label: ClassVar[str] = "U²-Net"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> U2NetConfig:
        return cls(**_known_fields(cls, data))


@dataclasses.dataclass(frozen=True)
class BlendConfig:
    """Two networks in one graph: a U-Net and a U²-Net, and the rule that makes their two maps one.

    The U-Net knows Leeds photos best, the U²-Net (fine-tuned from generic salient-object
    weights) finds butterflies of species and colours Leeds lacks. The rule
    (:mod:`seg_core.runtime.blend`): the U-Net's map where it is sure; elsewhere a
    weighted mean of the two maps in which the U²-Net's share rises on photos where the
    U-Net finds much less butterfly than it.

    Attributes:
        unet: the U-Net member.
        u2net: the U²-Net member.
        unsure_ratio: the U²-Net counts on photos where the U-Net's unsure pixels
            (probability between 0.1 and 0.9) exceed this share of its mask's area.
        u2net_weight: the U²-Net's share of the mean where the two roughly agree.
        gate_ratio: the gate opens when the U-Net's mask covers less than this share
            of the U²-Net's mask's area.
        gate_weight: the U²-Net's share where the gate is open.
        input_size: side of the square input the blend sees; a member with another
            input size sees it resized to its own.
    """

    unet: UNetConfig = UNetConfig()
    u2net: U2NetConfig = U2NetConfig(input_size=192, minmax_output=False, resample="bilinear", second_look=True)
    # The committed wingmask-blend's rule, chosen on the validation photos (README, "How the blend was chosen").
    unsure_ratio: float = 0.1
    u2net_weight: float = 0.5
    gate_ratio: float = 0.3
    gate_weight: float = 0.6
    input_size: int = INPUT_SIZE

    #: The fields of the rule that makes the two maps one (what a blend recipe or ``--blend`` sets).
    rule_fields: ClassVar[tuple[str, ...]] = ("unsure_ratio", "u2net_weight", "gate_ratio", "gate_weight")
    #: The members, in the order of the blend graph's output channels.
    members: ClassVar[tuple[str, str]] = ("unet", "u2net")
    family: ClassVar[str] = "blend"
    label: ClassVar[str] = "Blend"
    second_look: ClassVar[bool] = True
    resample: ClassVar[str] = "bilinear"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BlendConfig:
        fields = dict(_known_fields(cls, data))
        for key, member in (("unet", UNetConfig), ("u2net", U2NetConfig)):
            if isinstance(fields.get(key), dict):
                fields[key] = member.from_dict(fields[key])
        return cls(**fields)


#: A network's architecture, whichever family it belongs to.
NetworkConfig = UNetConfig | U2NetConfig | BlendConfig
FAMILIES: dict[str, type[NetworkConfig]] = {c.family: c for c in (UNetConfig, U2NetConfig, BlendConfig)}


def _known_fields(cls: type, data: dict) -> dict:
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.label} config keys: {sorted(unknown)}")
    return data


def save_config(config: NetworkConfig, model_name: str, directory: Path) -> Path:
    """Write ``config.json`` (registry name plus architecture, under its family's key) into ``directory``."""
    path = Path(directory) / CONFIG_FILE
    path.write_text(json.dumps({"model": model_name, config.family: config.to_dict()}, indent=2))
    return path


def load_config(directory: Path) -> tuple[str, NetworkConfig]:
    """Read ``config.json`` from ``directory``: (registry name, architecture).

    Raises:
        ValueError: no known family's section, or unknown keys in it.
    """
    data = json.loads((Path(directory) / CONFIG_FILE).read_text())
    families = [key for key in FAMILIES if key in data]
    if len(families) != 1:
        raise ValueError(f"{CONFIG_FILE} needs exactly one of {', '.join(FAMILIES)}, found {families}")
    return data["model"], FAMILIES[families[0]].from_dict(data[families[0]])


def is_blend(directory: Path) -> bool:
    """True when the model folder ``directory`` holds a blend (assembled from two members, never trained)."""
    return isinstance(load_config(directory)[1], BlendConfig)
