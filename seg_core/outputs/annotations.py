"""Per-butterfly measurements and COCO annotations from a mask.

Each 8-connected region of a mask is one butterfly (run a clean-up first so a
scale bar or a speck is not counted). For each region this module gives

* a :class:`Measurement`: area, bounding box and wingspan, in pixels and, with
  a scale, in millimetres;
* a COCO instance annotation: run-length-encoded segmentation (pycocotools'
  compressed RLE, counts as a string so the file is plain JSON), or polygons
  that rasterise back to the region exactly when it has no holes; bbox, area,
  and a score, the region's mean probability.

:class:`CocoBuilder` collects a batch into one COCO file that CVAT, Label
Studio and FiftyOne import.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pycocotools import mask as coco_mask

#: PNG text key under which a mask file carries its regions' scores.
SCORES_KEY = "wingmask:region_scores"
CATEGORY = {"id": 1, "name": "butterfly", "supercategory": "insect"}
MEASUREMENT_FIELDS = (
    "butterfly",
    "area_px",
    "bbox_x",
    "bbox_y",
    "bbox_width",
    "bbox_height",
    "wingspan_px",
    "area_mm2",
    "wingspan_mm",
)


@dataclass(frozen=True)
class Region:
    """One connected region: where its bounding box lies and its mask inside that box.

    Attributes:
        top, left: the box's position in the photo.
        mask: boolean (h, w) mask of the region within its box (other regions excluded).
    """

    top: int
    left: int
    mask: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        height, width = self.mask.shape
        return slice(self.top, self.top + height), slice(self.left, self.left + width)

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        """The region as a boolean mask of the whole photo."""
        out = np.zeros(shape, dtype=bool)
        out[self.slices] = self.mask
        return out


def regions(mask: np.ndarray) -> list[Region]:
    """The mask's 8-connected regions, in the order OpenCV labels them (raster order of first pixel)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = []
    for label in range(1, count):
        left, top, width, height = (int(v) for v in stats[label, :4])
        out.append(Region(top, left, labels[top : top + height, left : left + width] == label))
    return out


@dataclass(frozen=True)
class Measurement:
    """Size of one butterfly (one connected region).

    Attributes:
        butterfly: 1-based number of the region in :func:`regions` order.
        area_px: foreground pixels.
        bbox: (x, y, width, height) of the bounding box, in pixels.
        wingspan_px: the region's extent along its principal (longest-spread)
            axis, edge to edge, in pixels; for a spread butterfly seen from
            above, its wingspan.
        area_mm2, wingspan_mm: the same in millimetres, when a scale was given.
    """

    butterfly: int
    area_px: int
    bbox: tuple[int, int, int, int]
    wingspan_px: float
    area_mm2: float | None = None
    wingspan_mm: float | None = None

    def as_row(self) -> dict[str, float | int | None]:
        """A flat dict with the keys of :data:`MEASUREMENT_FIELDS` (bbox split into four)."""
        row = asdict(self)
        x, y, width, height = row.pop("bbox")
        row.update(bbox_x=x, bbox_y=y, bbox_width=width, bbox_height=height)
        return {key: row[key] for key in MEASUREMENT_FIELDS}


def principal_extent(region: np.ndarray) -> float:
    """Edge-to-edge length of a region along the axis of its largest second moment, in pixels.

    The axis comes from the region's central moments; the length is the spread
    of its outline's pixel centres along that axis plus the width of one pixel
    seen along it (|cos| + |sin|), so an axis-aligned bar of n pixels measures n.
    """
    region = np.asarray(region, dtype=np.uint8)
    if not region.any():
        return 0.0
    moments = cv2.moments(region, binaryImage=True)
    angle = 0.5 * np.arctan2(2.0 * moments["mu11"], moments["mu20"] - moments["mu02"])
    direction = np.array([np.cos(angle), np.sin(angle)])
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    projected = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float64) @ direction
    return float(projected.max() - projected.min() + np.abs(direction).sum())


def measure(mask: np.ndarray, pixels_per_mm: float | None = None) -> list[Measurement]:
    """A :class:`Measurement` for each region of the mask.

    Args:
        mask: boolean (H, W) mask.
        pixels_per_mm: the photo's scale; None leaves the millimetre fields empty.

    Raises:
        ValueError: ``pixels_per_mm`` is not a positive number.
    """
    if pixels_per_mm is not None and not (np.isfinite(pixels_per_mm) and pixels_per_mm > 0):
        raise ValueError(f"pixels per mm must be a positive number, got {pixels_per_mm}")
    out = []
    for number, region in enumerate(regions(mask), start=1):
        height, width = region.mask.shape
        area, span = region.area, principal_extent(region.mask)
        in_mm = pixels_per_mm is not None
        out.append(
            Measurement(
                butterfly=number,
                area_px=area,
                bbox=(region.left, region.top, width, height),
                wingspan_px=round(span, 2),
                area_mm2=round(area / pixels_per_mm**2, 3) if in_mm else None,
                wingspan_mm=round(span / pixels_per_mm, 3) if in_mm else None,
            )
        )
    return out


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a boolean mask, ``{"size": [h, w], "counts": str}`` (JSON-ready)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_segmentation(segmentation: dict | list, height: int, width: int) -> np.ndarray:
    """A boolean (height, width) mask from a COCO segmentation: RLE (compressed or not) or polygons."""
    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width)) if segmentation else None
        return np.zeros((height, width), bool) if rle is None else coco_mask.decode(rle).astype(bool)
    if isinstance(segmentation.get("counts"), list):
        segmentation = coco_mask.frPyObjects(segmentation, height, width)
    return coco_mask.decode(segmentation).astype(bool)


def polygons(region: Region) -> list[list[float]]:
    """Outline polygons of a region, in COCO's ``[x1, y1, x2, y2, ...]`` photo coordinates.

    The outline is traced on the region doubled in size, so its vertices fall
    between pixel centres and pycocotools' rasteriser gives back exactly the
    region's pixels; holes are not representable in COCO polygons and come back filled.
    Outlines with fewer than three vertices are dropped.
    """
    doubled = cv2.resize(region.mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(doubled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    offset = np.array([region.left, region.top], dtype=np.float64)
    out = []
    for contour in contours:
        if len(contour) < 3:
            continue
        points = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / 2.0 + offset
        out.append([round(float(v), 2) for v in points.ravel()])
    return out


def _has_holes(region: Region) -> bool:
    contours, hierarchy = cv2.findContours(region.mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0, :, 3] >= 0).any())


def instances(
    mask: np.ndarray,
    prob: np.ndarray | None = None,
    with_polygons: bool = False,
    scores: Sequence[float] | None = None,
) -> list[dict]:
    """COCO annotations (without ids) for each region of a mask.

    Args:
        mask: boolean (H, W) mask.
        prob: the network's probability map; each region's score is its mean.
        with_polygons: polygons instead of RLE, except for regions with holes
            or too small to outline, which keep RLE so nothing is lost.
        scores: the regions' scores when ``prob`` is not at hand (e.g. stored
            with a mask written earlier); ignored when ``prob`` is given, and
            left out when their number does not match the regions (an edited mask).

    Returns:
        Dicts with ``segmentation``, ``area``, ``bbox``, ``iscrowd``,
        ``category_id`` and, when known, ``score``.
    """
    found = regions(mask)
    if prob is not None:
        scores = region_scores(found, prob)
    if scores is not None and len(scores) != len(found):
        scores = None
    out = []
    for index, region in enumerate(found):
        height, width = region.mask.shape
        outline = polygons(region) if with_polygons and not _has_holes(region) else []
        annotation = {
            "category_id": CATEGORY["id"],
            "segmentation": outline or encode_rle(region.full(np.shape(mask))),
            "area": region.area,
            "bbox": [region.left, region.top, width, height],
            "iscrowd": 0,
        }
        if scores is not None:
            annotation["score"] = round(float(scores[index]), 4)
        out.append(annotation)
    return out


def region_scores(found: Sequence[Region], prob: np.ndarray) -> list[float]:
    """Mean probability inside each region."""
    prob = np.asarray(prob, dtype=np.float32)
    return [float(prob[r.slices][r.mask].mean()) for r in found]


@dataclass
class CocoBuilder:
    """One COCO instances file for a batch of photos: unique image and annotation ids.

    Ids count from 1 in the order photos are added.
    """

    description: str = "Wingmask butterfly masks"
    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)

    def add_image(self, file_name: str, width: int, height: int, annotations: Sequence[dict]) -> int:
        """Record a photo and its annotations (from :func:`instances`); returns the image id."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})
        for annotation in annotations:
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id, **annotation})
        return image_id

    def to_dict(self) -> dict:
        return {
            "info": {"description": self.description},
            "images": self.images,
            "annotations": self.annotations,
            "categories": [CATEGORY],
        }

    def write(self, path: Path) -> None:
        """Write the file through a temporary one, so a crash never leaves half a JSON file."""
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(self.to_dict()))
        os.replace(partial, path)


def mask_png(mask: np.ndarray, scores: Sequence[float] | None = None) -> bytes:
    """A mask as a grey PNG (0 background, 255 butterfly), its regions' scores in a text chunk.

    Storing the scores with the mask lets a resumed batch build its COCO file
    from the masks already written, without running the network again.
    """
    info = PngInfo()
    if scores is not None:
        info.add_text(SCORES_KEY, json.dumps([round(float(v), 4) for v in scores]))
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def stored_scores(path: Path) -> list[float] | None:
    """The region scores :func:`mask_png` stored in a mask file, or None when it has none."""
    with Image.open(path) as img:
        text = getattr(img, "text", {}).get(SCORES_KEY)
    try:
        values = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return [float(v) for v in values] if isinstance(values, list) else None


def write_measurements(path: Path, rows: Iterator[dict] | Sequence[dict]) -> None:
    """Write measurement rows (``photo`` then :data:`MEASUREMENT_FIELDS`) as CSV, through a temporary file."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=("photo", *MEASUREMENT_FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)
