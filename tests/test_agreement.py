"""Agreement between several models' masks: pairwise IoU, who votes, share in dispute."""

import numpy as np
import pytest

from seg_core.evaluation.agreement import dispute_share, pairwise_iou, voters


def test_pairwise_iou_is_symmetric_with_ones_on_the_diagonal():
    a = np.array([[1, 1, 0, 0]], bool)
    b = np.array([[1, 0, 0, 0]], bool)
    c = np.array([[0, 0, 1, 1]], bool)
    table = pairwise_iou({"a": a, "b": b, "c": c})
    value = {(r.model, r.other): r.iou for r in table.itertuples()}
    assert len(table) == 9 and list(table["model"].unique()) == ["a", "b", "c"]
    assert value["a", "a"] == value["c", "c"] == 1.0
    assert value["a", "b"] == value["b", "a"] == pytest.approx(0.5)
    assert value["a", "c"] == 0.0


def test_pairwise_iou_refuses_masks_of_different_shapes():
    with pytest.raises(ValueError):
        pairwise_iou({"a": np.zeros((2, 2), bool), "b": np.zeros((2, 3), bool)})


def test_networks_vote_alone_unless_baselines_are_asked_for():
    kinds = {"net-1": "unet", "otsu": "baseline", "net-2": "unet"}
    assert voters(kinds, include_baselines=False) == ["net-1", "net-2"]
    assert voters(kinds, include_baselines=True) == ["net-1", "otsu", "net-2"]
    assert voters({"net-1": "unet", "otsu": "baseline"}, include_baselines=False) == ["net-1", "otsu"]


def test_dispute_share_counts_split_votes_only():
    votes = np.array([0, 1, 2, 3, 3, 0])
    assert dispute_share(votes, 3) == pytest.approx(2 / 6)
    assert dispute_share(np.array([], int), 3) == 0.0
