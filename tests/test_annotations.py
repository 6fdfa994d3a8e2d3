"""Measurements and COCO annotations: RLE and polygon round trips, a drawn ellipse, a valid COCO file."""

import csv
import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from seg_core.core.metrics import confusion, iou
from seg_core.outputs.annotations import (
    CocoBuilder,
    decode_segmentation,
    encode_rle,
    instances,
    mask_png,
    measure,
    polygons,
    regions,
    stored_scores,
    write_measurements,
)


def blobs(seed: int, shape=(48, 64)) -> np.ndarray:
    """A random mask of several smooth blobs, some touching the border, some thin, no holes."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.random(shape), (0, 0), 3)
    mask = field > np.quantile(field, 0.6)
    # Holes are filled so polygons (which cannot hold holes) must give the mask back exactly.
    outside = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    _, labels = cv2.connectedComponents(outside, connectivity=4)
    return mask | (labels[1:-1, 1:-1] != labels[0, 0])


def two_butterflies() -> np.ndarray:
    mask = np.zeros((40, 60), bool)
    mask[5:15, 5:25] = True
    mask[20:35, 30:55] = True
    return mask


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_is_exact_and_json_ready(seed):
    mask = blobs(seed)
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [48, 64]
    json.dumps(rle)
    assert (decode_segmentation(rle, 48, 64) == mask).all()


@pytest.mark.parametrize("seed", range(5))
def test_polygons_rasterise_back_to_the_region(seed):
    mask = blobs(seed)
    for region in regions(mask):
        outline = polygons(region)
        back = decode_segmentation(outline, *mask.shape)
        assert iou(confusion(back, region.full(mask.shape))) >= 0.99


def test_polygons_are_exact_on_a_single_pixel_and_a_diagonal():
    mask = np.zeros((6, 6), bool)
    mask[1, 1] = True
    mask[3, 3] = mask[4, 4] = True
    for region in regions(mask):
        assert (decode_segmentation(polygons(region), 6, 6) == region.full((6, 6))).all()


def test_regions_are_8_connected():
    mask = np.zeros((5, 5), bool)
    mask[0, 0] = mask[1, 1] = mask[4, 4] = True
    found = regions(mask)
    assert [r.area for r in found] == [2, 1]
    assert (found[1].full((5, 5)) == (np.arange(25).reshape(5, 5) == 24)).all()


def test_ellipse_measurements_match_its_drawn_size():
    mask = np.zeros((200, 240), np.uint8)
    # Semi-axes 80 and 30 pixels, tilted by 30 degrees; OpenCV fills the pixels whose
    # centres lie on or within them, so edge to edge the ellipse is half a pixel larger.
    cv2.ellipse(mask, (120, 100), (80, 30), 30, 0, 360, 1, thickness=-1)
    (found,) = measure(mask.astype(bool), pixels_per_mm=4.0)
    assert found.butterfly == 1
    assert found.area_px == pytest.approx(np.pi * 80.5 * 30.5, rel=0.01)
    assert found.wingspan_px == pytest.approx(2 * 80 + 1, abs=1.5)
    assert found.wingspan_mm == pytest.approx(found.wingspan_px / 4, abs=1e-3)
    assert found.area_mm2 == pytest.approx(found.area_px / 16, abs=1e-3)
    x, y, width, height = found.bbox
    ys, xs = np.nonzero(mask)
    assert (x, y, width, height) == (xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1)


def test_axis_aligned_bar_measures_its_length_and_no_scale_leaves_mm_empty():
    mask = np.zeros((20, 50), bool)
    mask[8:12, 5:45] = True
    (found,) = measure(mask)
    assert found.wingspan_px == pytest.approx(40, abs=0.01) and found.area_px == 160
    assert found.area_mm2 is None and found.wingspan_mm is None
    assert found.as_row()["bbox_width"] == 40
    with pytest.raises(ValueError, match="positive"):
        measure(mask, pixels_per_mm=0)


def test_measurements_csv(tmp_path):
    rows = [{"photo": "a.jpg", **m.as_row()} for m in measure(two_butterflies(), 2.0)]
    write_measurements(tmp_path / "m.csv", rows)
    with (tmp_path / "m.csv").open() as handle:
        read = list(csv.DictReader(handle))
    assert [r["butterfly"] for r in read] == ["1", "2"]
    assert float(read[1]["area_mm2"]) == pytest.approx(15 * 25 / 4)


def test_instances_carry_area_bbox_and_mean_probability():
    mask = two_butterflies()
    prob = np.where(mask, 0.9, 0.1).astype(np.float32)
    prob[20:35, 30:55] = 0.7
    first, second = instances(mask, prob)
    assert first["area"] == 200 and first["bbox"] == [5, 5, 20, 10] and first["iscrowd"] == 0
    assert first["score"] == pytest.approx(0.9) and second["score"] == pytest.approx(0.7)
    assert "score" not in instances(mask)[0]
    assert "score" not in instances(mask, scores=[0.5])[0]


def test_polygon_instances_fall_back_to_rle_for_a_region_with_a_hole():
    mask = two_butterflies()
    mask[25:30, 40:45] = False
    plain, holed = instances(mask, with_polygons=True)
    assert isinstance(plain["segmentation"], list)
    assert isinstance(holed["segmentation"], dict)
    assert (decode_segmentation(holed["segmentation"], 40, 60) == regions(mask)[1].full((40, 60))).all()


@pytest.mark.parametrize("with_polygons", [False, True])
def test_coco_file_loads_with_unique_ids_and_areas_matching_the_masks(tmp_path, with_polygons):
    masks = {"a.jpg": two_butterflies(), "b.png": blobs(1, (40, 60)), "empty.jpg": np.zeros((40, 60), bool)}
    builder = CocoBuilder()
    for name, mask in masks.items():
        builder.add_image(name, 60, 40, instances(mask, np.full(mask.shape, 0.8), with_polygons))
    path = tmp_path / "annotations.json"
    builder.write(path)
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["butterfly"]
    annotation_ids = [a["id"] for a in coco.dataset["annotations"]]
    assert len(set(annotation_ids)) == len(annotation_ids)
    assert len({i["id"] for i in coco.dataset["images"]}) == 3
    for image in coco.dataset["images"]:
        mask = masks[image["file_name"]]
        assert (image["width"], image["height"]) == (60, 40)
        drawn = np.zeros_like(mask)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            region = coco.annToMask(annotation).astype(bool)
            assert annotation["area"] == region.sum()
            drawn |= region
        assert (drawn == mask).all()
    assert not list(tmp_path.glob(".*"))


def test_mask_png_stores_the_region_scores(tmp_path):
    path = tmp_path / "m.png"
    path.write_bytes(mask_png(two_butterflies(), [0.91234, 0.5]))
    assert stored_scores(path) == [0.9123, 0.5]
    path.write_bytes(mask_png(two_butterflies()))
    assert stored_scores(path) is None
