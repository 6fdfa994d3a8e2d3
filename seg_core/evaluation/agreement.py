"""How far several models' masks of one photo agree.

A vote map over every model is swamped by one outlier: a baseline that
disagrees with everyone puts most pixels "in dispute" even when the networks
agree closely. Pairwise IoU shows who agrees with whom, and the vote can be
limited to a group of comparable models.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from seg_core.core.metrics import confusion, iou


def pairwise_iou(masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """Foreground IoU between every two masks, both ways round, and 1 on the diagonal.

    Args:
        masks: model name -> boolean mask, all of one shape.

    Returns:
        Long form, one row per ordered pair: ``model``, ``other``, ``iou``, in
        the order of ``masks`` (ready for a heat map).

    Raises:
        ValueError: masks of different shapes.
    """
    names = list(masks)
    value = {(name, name): 1.0 for name in names}
    for a, b in combinations(names, 2):
        value[a, b] = value[b, a] = iou(confusion(masks[a], masks[b]))
    rows = [(a, b, value[a, b]) for a in names for b in names]
    return pd.DataFrame(rows, columns=["model", "other", "iou"])


def voters(kinds: dict[str, str], include_baselines: bool) -> list[str]:
    """The models whose masks go into the vote map.

    Networks vote among themselves unless baselines are asked for; with fewer
    than two networks chosen there is nothing to compare, so everyone votes.

    Args:
        kinds: model name -> kind (``"unet"``, ``"baseline"``, ...), in display order.
        include_baselines: let every model vote.
    """
    networks = [name for name, kind in kinds.items() if kind == "unet"]
    return list(kinds) if include_baselines or len(networks) < 2 else networks


def dispute_share(votes: np.ndarray, voters_count: int) -> float:
    """Share of pixels on which some but not all voters say butterfly.

    Args:
        votes: per-pixel count of voters calling the pixel butterfly.
        voters_count: how many masks voted.
    """
    votes = np.asarray(votes)
    if votes.size == 0:
        return 0.0
    return float(np.count_nonzero((votes > 0) & (votes < voters_count)) / votes.size)
