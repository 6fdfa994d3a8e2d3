"""Model configuration saved beside the weights so any tool can rebuild a model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

INPUT_SIZE = 256
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "card.json"
HISTORY_FILE = "history.csv"


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown U-Net config keys: {sorted(unknown)}")
        return cls(**data)


def save_config(config: UNetConfig, model_name: str, directory: Path) -> Path:
    """Write ``config.json`` (registry name plus architecture) into ``directory``."""
    path = Path(directory) / CONFIG_FILE
    path.write_text(json.dumps({"model": model_name, "unet": config.to_dict()}, indent=2))
    return path


def load_config(directory: Path) -> tuple[str, UNetConfig]:
    """Read ``config.json`` from ``directory``: (registry name, architecture)."""
    data = json.loads((Path(directory) / CONFIG_FILE).read_text())
    return data["model"], UNetConfig.from_dict(data["unet"])
