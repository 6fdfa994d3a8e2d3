"""Losses for binary segmentation, written with ``keras.ops`` (any backend)."""

from __future__ import annotations

import keras
from keras import ops

EPS = 1e-6


def soft_dice_loss(y_true, y_pred):
    """1 - soft Dice over each image, averaged over the batch."""
    axes = (1, 2, 3)
    inter = ops.sum(y_true * y_pred, axis=axes)
    denom = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return ops.mean(1.0 - (2.0 * inter + 1.0) / (denom + 1.0))


def bce_loss(y_true, y_pred):
    """Mean pixel binary cross-entropy."""
    return ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))


def bce_dice_loss(y_true, y_pred):
    """BCE plus soft Dice: BCE gives well-calibrated pixels, Dice rewards overlap."""
    return bce_loss(y_true, y_pred) + soft_dice_loss(y_true, y_pred)


LOSSES = {"bce": bce_loss, "bce_dice": bce_dice_loss}
