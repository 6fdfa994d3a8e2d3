"""Correcting a mask by hand: regions grown from a click, GrabCut from seeds, brush strokes, undo.

Pure functions on arrays of one size (the dashboard works on the photo at the size it
shows). A click is guided by the network: :func:`grow_region` floods from the clicked
pixel over the neighbours the network rates at least half as likely butterfly as the
click (or, to remove, at least half as likely background), so one click on a wing the
threshold cut off brings the whole wing back. Where the network has no opinion at the
click (a missed blue wing it scores near zero), the probability map cannot guide a
flood, and :func:`grabcut_region` decides from the photo's colours instead, seeded by
the click and the current mask. :func:`brush` paints or erases along a stroke for
whatever is left. :class:`History` keeps every state for undo and reset.

Points are ``(x, y)`` pixel coordinates, as a browser reports a click.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: A click grows over pixels whose probability is at least this share of the clicked pixel's.
GROW_SHARE = 0.5
#: Below this probability at the click the network gives no guidance; GrabCut decides instead.
MIN_GUIDING_PROBABILITY = 0.05
#: Radius of the sure seed GrabCut gets around a click, as a fraction of the photo's longer side.
SEED_RADIUS_FRACTION = 0.01
#: GrabCut works on a copy of at most this many pixels, so a click answers within about a second.
GRABCUT_MAX_PIXELS = 400_000
#: GrabCut rounds; the result changes little after a few.
GRABCUT_ITERATIONS = 4
#: Edits an undo history keeps (older ones can no longer be undone one by one; reset still returns to the start).
MAX_UNDO = 30

GROW = "grow"
GRABCUT = "grabcut"
BRUSH = "brush"
TOOLS = (GROW, GRABCUT, BRUSH)

Point = tuple[int, int]


class CorrectionError(ValueError):
    """An edit that cannot apply: unknown tool, a point outside the photo, or arrays of different sizes."""


@dataclass(frozen=True)
class Edit:
    """One correction: a tool, whether it adds or removes butterfly, and where.

    Attributes:
        tool: one of :data:`TOOLS`.
        add: True to add butterfly, False to remove it.
        points: the click (one point) or the stroke's points, ``(x, y)`` in pixels.
        radius: the brush's radius in pixels (brush only).
    """

    tool: str
    add: bool
    points: tuple[Point, ...]
    radius: int = 0


def from_screen(x: float, y: float, shown: tuple[float, float], shape: tuple[int, int]) -> Point:
    """A point of the photo shown at ``shown`` = (width, height) screen pixels, in the photo's pixels (kept inside)."""
    height, width = shape
    column = min(width - 1, max(0, int(x * width / shown[0])))
    row = min(height - 1, max(0, int(y * height / shown[1])))
    return column, row


def drag_edit(tool: str, add: bool, start: Point, end: Point, radius: int) -> Edit:
    """The edit of a press at ``start`` released at ``end``: a brush stroke between them, else a click at ``start``."""
    return Edit(tool, add, (start, end) if tool == BRUSH else (start,), radius if tool == BRUSH else 0)


def _check_point(shape: tuple[int, int], point: Point) -> tuple[int, int]:
    """(row, column) of an ``(x, y)`` point, checked to lie inside an array of ``shape``."""
    x, y = int(point[0]), int(point[1])
    if not (0 <= y < shape[0] and 0 <= x < shape[1]):
        raise CorrectionError(f"point ({x}, {y}) is outside the {shape[1]}x{shape[0]} photo")
    return y, x


def _component(region: np.ndarray, row: int, column: int) -> np.ndarray:
    """The 8-connected part of boolean ``region`` that holds pixel (row, column) (empty if it is not in it)."""
    if not region[row, column]:
        return np.zeros_like(region)
    _, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    return labels == labels[row, column]


def grow_region(prob: np.ndarray, point: Point, add: bool = True, share: float = GROW_SHARE) -> np.ndarray:
    """The region a click selects, flooded over the probability map from the clicked pixel.

    To add, the region is the connected set of pixels, around the click, whose
    probability is at least ``share`` of the click's; to remove, the same on the
    background probability (1 - p). So a click on a wing the network half saw
    (p = 0.3) takes the wing's pixels down to p = 0.15, and stops where the
    network is surer it is background.

    Args:
        prob: foreground probabilities (H, W) in [0, 1].
        point: the click, ``(x, y)``.
        add: grow towards butterfly (True) or towards background (False).
        share: how far below the click's own confidence the flood may go, in (0, 1].

    Returns:
        Boolean (H, W) region; it always holds the clicked pixel.

    Raises:
        CorrectionError: the point is outside the map.
    """
    prob = np.asarray(prob, dtype=np.float32)
    row, column = _check_point(prob.shape, point)
    confidence = prob if add else 1.0 - prob
    level = confidence[row, column] * np.float32(share)
    return _component(confidence >= level, row, column)


def brush(shape: tuple[int, int], points: Sequence[Point], radius: int) -> np.ndarray:
    """The pixels a round brush of ``radius`` covers along the stroke through ``points`` (one point: a dot).

    Raises:
        CorrectionError: no point, or a radius under 1.
    """
    if not points:
        raise CorrectionError("a brush stroke needs at least one point")
    if radius < 1:
        raise CorrectionError(f"the brush radius must be at least 1 pixel, got {radius}")
    canvas = np.zeros(shape, dtype=np.uint8)
    ends = [(int(x), int(y)) for x, y in points]
    for start, end in zip(ends, ends[1:], strict=False):
        cv2.line(canvas, start, end, 1, thickness=2 * radius + 1)
    for centre in ends:
        cv2.circle(canvas, centre, radius, 1, thickness=-1)
    return canvas.astype(bool)


def seed_radius(shape: tuple[int, int]) -> int:
    """Radius of the sure seed around a click (:data:`SEED_RADIUS_FRACTION` of the longer side, at least 2)."""
    return max(2, round(SEED_RADIUS_FRACTION * max(shape)))


def _window(region: np.ndarray, margin: float = 0.25) -> tuple[slice, slice]:
    """A box around ``region``'s pixels, widened by ``margin`` of its size on every side (background to learn from)."""
    rows, columns = np.nonzero(region)
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    pad_y, pad_x = round((bottom - top) * margin) + 8, round((right - left) * margin) + 8
    height, width = region.shape
    return slice(max(0, top - pad_y), min(height, bottom + pad_y)), slice(
        max(0, left - pad_x), min(width, right + pad_x)
    )


def grabcut_region(image: np.ndarray, mask: np.ndarray, points: Sequence[Point], add: bool = True) -> np.ndarray:
    """The mask redrawn by GrabCut from the photo's colours, seeded by clicks and the current mask.

    The clicks are sure butterfly (``add``) or sure background; the current mask
    is probable butterfly and everything else probable background. GrabCut runs
    on a window around both, shrunk to :data:`GRABCUT_MAX_PIXELS`, so one click
    answers quickly; outside the window the mask is unchanged, and the clicked
    seeds always end up as asked.

    Args:
        image: RGB uint8 photo (H, W, 3).
        mask: the current boolean mask (H, W).
        points: the clicks, ``(x, y)``.
        add: the clicks mark butterfly (True) or background (False).

    Returns:
        A new boolean (H, W) mask.

    Raises:
        CorrectionError: sizes differ, not an RGB uint8 photo, no point, or a point outside the photo.
    """
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[:2] != mask.shape:
        raise CorrectionError(f"expected an RGB uint8 photo of the mask's size {mask.shape}, got {image.shape}")
    if not points:
        raise CorrectionError("GrabCut needs at least one click")
    for point in points:
        _check_point(mask.shape, point)
    seeds = brush(mask.shape, points, seed_radius(mask.shape))
    box = _window(mask | seeds)
    crop, crop_mask, crop_seeds = image[box], mask[box], seeds[box]
    height, width = crop_mask.shape
    scale = min(1.0, float(np.sqrt(GRABCUT_MAX_PIXELS / (height * width))))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1.0:
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        crop_mask = cv2.resize(crop_mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
        crop_seeds = cv2.resize(crop_seeds.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    labels = np.where(crop_mask, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    labels[crop_seeds] = cv2.GC_FGD if add else cv2.GC_BGD
    if add and crop_mask.all():
        # GrabCut needs background to learn colours from; the window's border is the best guess.
        labels[[0, -1], :], labels[:, [0, -1]] = cv2.GC_PR_BGD, cv2.GC_PR_BGD
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(crop), labels, None, *models, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    decided = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if scale < 1.0:
        decided = cv2.resize(decided.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5
    out = mask.copy()
    out[box] = decided
    return out | seeds if add else out & ~seeds


def apply_edit(image: np.ndarray, prob: np.ndarray, mask: np.ndarray, edit: Edit) -> np.ndarray:
    """The mask after one edit (a new array; ``mask`` is left as it is).

    A grow click where the network gives less than
    :data:`MIN_GUIDING_PROBABILITY` of the asked class falls back to GrabCut,
    which needs no guidance from the network.

    Args:
        image: RGB uint8 photo (H, W, 3).
        prob: the network's foreground probabilities (H, W).
        mask: the current boolean mask (H, W).
        edit: what to do.

    Raises:
        CorrectionError: unknown tool, sizes differ, or a point outside the photo.
    """
    mask = np.asarray(mask, dtype=bool)
    if np.shape(prob) != mask.shape or image.shape[:2] != mask.shape:
        raise CorrectionError(f"photo {image.shape[:2]}, probabilities {np.shape(prob)} and mask {mask.shape} differ")
    if edit.tool == BRUSH:
        for point in edit.points:
            _check_point(mask.shape, point)
        stroke = brush(mask.shape, edit.points, edit.radius)
        return mask | stroke if edit.add else mask & ~stroke
    if edit.tool not in (GROW, GRABCUT):
        raise CorrectionError(f"unknown tool {edit.tool!r}; use one of {', '.join(TOOLS)}")
    if not edit.points:
        raise CorrectionError(f"the {edit.tool} tool needs a click")
    if edit.tool == GROW:
        row, column = _check_point(mask.shape, edit.points[0])
        confidence = float(prob[row, column]) if edit.add else 1.0 - float(prob[row, column])
        if confidence >= MIN_GUIDING_PROBABILITY:
            region = grow_region(prob, edit.points[0], edit.add)
            return mask | region if edit.add else mask & ~region
    return grabcut_region(image, mask, edit.points, edit.add)


@dataclass(frozen=True)
class History:
    """A mask's states under correction, oldest first, each packed to one bit a pixel.

    Immutable: :meth:`push`, :meth:`undo` and :meth:`reset` return new
    histories, so a front end can keep one in its session state. The first
    state is the mask the correction started from (what :meth:`reset` returns
    to); at most :data:`MAX_UNDO` edits can be undone.
    """

    shape: tuple[int, int]
    states: tuple[bytes, ...]

    @classmethod
    def start(cls, mask: np.ndarray) -> History:
        """A history whose only state is ``mask``."""
        mask = np.asarray(mask, dtype=bool)
        return cls(mask.shape, (_pack(mask),))

    @property
    def current(self) -> np.ndarray:
        """The mask after every edit kept (a new boolean array)."""
        return _unpack(self.states[-1], self.shape)

    @property
    def original(self) -> np.ndarray:
        """The mask the correction started from."""
        return _unpack(self.states[0], self.shape)

    @property
    def edits(self) -> int:
        """How many edits can be undone."""
        return len(self.states) - 1

    def push(self, mask: np.ndarray) -> History:
        """The history with ``mask`` as its new current state (no new state when nothing changed).

        Raises:
            CorrectionError: ``mask`` is not of the history's size.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.shape:
            raise CorrectionError(f"mask {mask.shape} is not of the corrected photo's size {self.shape}")
        packed = _pack(mask)
        if packed == self.states[-1]:
            return self
        edits = (*self.states[1:], packed)[-MAX_UNDO:]
        return History(self.shape, (self.states[0], *edits))

    def undo(self) -> History:
        """The history without its last edit (itself when there is none)."""
        return History(self.shape, self.states[:-1]) if self.edits else self

    def reset(self) -> History:
        """The history back at its first state."""
        return History(self.shape, self.states[:1])


def _pack(mask: np.ndarray) -> bytes:
    return np.packbits(mask, axis=None).tobytes()


def _unpack(packed: bytes, shape: tuple[int, int]) -> np.ndarray:
    count = shape[0] * shape[1]
    return np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=count).astype(bool).reshape(shape)
