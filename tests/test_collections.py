"""Your own labelled collections: mask conventions, broken files, COCO, ZIP uploads, the CLI and the background job.

Every collection here is a handful of tiny hand-made PNGs: a dark butterfly on a
light ground, which the ``otsu`` baseline (or the fake predictor below) finds exactly.
"""

import contextlib
import io
import json
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pandas as pd
import pytest
from collection_cases import SHAPE, blob, folder_zip, photo_of, save, zip_of
from PIL import Image

from seg_core import evaluate as evaluate_cli
from seg_core.core.paths import REPO_ROOT
from seg_core.data import collections as col
from seg_core.evaluation import evaluate as evaluation
from seg_core.evaluation import results
from seg_core.outputs import annotations
from seg_core.runtime.base import Predictor
from seg_core.service import collection_eval, jobs


def png_bytes(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def palette_mask(mask: np.ndarray) -> Image.Image:
    img = Image.fromarray(mask.astype(np.uint8), "P")
    img.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    return img


def grey_palette_mask(mask: np.ndarray) -> Image.Image:
    img = Image.fromarray(mask.astype(np.uint8), "P")
    img.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    return img


def soft(mask: np.ndarray) -> np.ndarray:
    """0/255 with anti-aliased edges: grey levels on both sides of the outline, each on its own side of 128."""
    levels = mask.astype(np.uint8) * 255
    outline = mask ^ np.roll(mask, 1, axis=1)
    grey = np.random.default_rng(0).integers(1, 127, mask.shape)
    return np.where(outline, np.where(mask, 255 - grey, grey), levels).astype(np.uint8)


#: Mask encodings of every convention: name -> (encoder of a boolean mask to an image, convention read).
ENCODINGS = {
    "zero_255": (lambda m: Image.fromarray(m.astype(np.uint8) * 255), col.ZERO_255),
    "soft_edges": (lambda m: Image.fromarray(soft(m)), col.ZERO_255),
    "zero_one": (lambda m: Image.fromarray(m.astype(np.uint8)), col.ZERO_ONE),
    "one_bit": (lambda m: Image.fromarray(m).convert("1"), col.ZERO_ONE),
    "palette": (palette_mask, col.PALETTE),
    "grey_palette": (grey_palette_mask, col.ZERO_255),
    "label_38": (lambda m: Image.fromarray(m.astype(np.uint8) * 38), col.NON_ZERO),
    "red_on_black": (lambda m: Image.fromarray(np.stack([m * 255, m * 0, m * 0], -1).astype(np.uint8)), col.NON_ZERO),
    "alpha": (
        lambda m: Image.fromarray(np.dstack([np.zeros((*m.shape, 3), np.uint8), m.astype(np.uint8) * 255]), "RGBA"),
        col.ZERO_255,
    ),
    "sixteen_bit": (lambda m: Image.fromarray(m.astype(np.uint16) * 65535), col.ZERO_255),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_mask_convention_is_detected_and_read_exactly(encoding):
    mask = blob()
    encode, convention = ENCODINGS[encoding]
    reading = col.read_mask(png_bytes(encode(mask)))
    assert reading.convention == convention
    assert np.array_equal(reading.mask, mask)


def test_leeds_masks_in_both_of_their_conventions():
    mask = blob()
    # The official palette: white and green are butterfly; red (along the outline) and black are not.
    index = np.where(mask, 1, 0).astype(np.uint8)
    index[(mask ^ np.roll(mask, 1, axis=0)) & ~mask] = 2
    index[mask & ~np.roll(mask, 1, axis=1)] = 3
    official = Image.fromarray(index, "P")
    official.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 255, 0])
    reading = col.read_mask(png_bytes(official))
    assert reading.convention == col.PALETTE and np.array_equal(reading.mask, mask)
    # The redistributed copy: 0/255 RGB with a one-pixel dark-red frame, which is not butterfly.
    rgb = np.repeat(soft(mask)[..., None], 3, axis=2)
    rgb[0, :], rgb[-1, :], rgb[:, 0], rgb[:, -1] = (226, 0, 0), (226, 0, 0), (226, 0, 0), (226, 0, 0)
    reading = col.read_mask(png_bytes(Image.fromarray(rgb)))
    assert reading.convention == col.ZERO_255 and np.array_equal(reading.mask, mask)


def test_a_lossy_jpeg_mask_reads_as_0_255_cut_at_128():
    mask = blob((60, 80))
    reading = col.read_mask(png_bytes(Image.fromarray(mask.astype(np.uint8) * 255), "JPEG"))
    assert reading.convention == col.ZERO_255
    assert (reading.mask == mask).mean() > 0.99


def test_unreadable_masks_raise_invalid_image_error():
    with pytest.raises(col.InvalidImageError, match="empty"):
        col.read_mask(b"")
    with pytest.raises(col.InvalidImageError, match="not a readable image"):
        col.read_mask(b"plain text")


def write_folder(root, conventions=tuple(ENCODINGS), broken: bool = False):
    """A collection folder with one pair per mask encoding (and, if asked, one of each broken case)."""
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for number, encoding in enumerate(conventions):
        mask = blob(shift=number % 5)
        save(photo_of(mask), root / "images" / f"{encoding}.png")
        ENCODINGS[encoding][0](mask).save(root / "masks" / f"{encoding}.png")
    if broken:
        save(photo_of(blob()), root / "images" / "other_size.png")
        save(blob((10, 12)).astype(np.uint8) * 255, root / "masks" / "other_size.png")
        (root / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
        save(blob().astype(np.uint8) * 255, root / "masks" / "corrupt.png")
        save(photo_of(blob()), root / "images" / "no_mask.png")
        save(blob().astype(np.uint8) * 255, root / "masks" / "no_photo.png")
        (root / "images" / "notes.txt").write_text("shot in the garden")
        save(photo_of(blob()), root / "images" / "empty.png")
        save(np.zeros(SHAPE, np.uint8), root / "masks" / "empty.png")
    return root


BROKEN = {
    "masks/other_size.png": "10 pixels",
    "images/corrupt.jpg": "not a readable image",
    "images/no_mask.png": "no mask",
    "masks/no_photo.png": "no photo",
    "images/notes.txt": "not an image file",
    "masks/empty.png": "empty",
}


def test_a_folder_in_every_convention_with_every_broken_case(tmp_path):
    collection = col.read_folder(write_folder(tmp_path / "mixed", broken=True))
    assert collection.name == "mixed"
    assert sorted(p.id for p in collection.pairs) == sorted(ENCODINGS)
    expected = {convention: 0 for _, convention in ENCODINGS.values()}
    for _, convention in ENCODINGS.values():
        expected[convention] += 1
    assert collection.conventions == expected
    reasons = {s.file: s.reason for s in collection.skipped}
    assert set(reasons) == set(BROKEN)
    for file, words in BROKEN.items():
        assert words in reasons[file], (file, reasons[file])
    first = next(collection.photos())
    assert first.image.shape == (*SHAPE, 3) and first.mask.dtype == bool


def test_leeds_style_mask_names_and_folders_pair_too(tmp_path):
    root = tmp_path / "leedsish"
    save(photo_of(blob()), root / "images" / "0010001.png")
    save(blob().astype(np.uint8) * 255, root / "segmentations" / "0010001_seg0.png")
    save(photo_of(blob()), root / "images" / "b.png")
    save(blob().astype(np.uint8) * 255, root / "segmentations" / "b_mask.png")
    assert [p.id for p in col.read_folder(root).pairs] == ["0010001", "b"]


def test_unusable_collections_raise_specific_errors(tmp_path):
    with pytest.raises(col.CollectionNotFoundError, match="no folder"):
        col.scan_folder(tmp_path / "absent")
    (tmp_path / "flat").mkdir()
    with pytest.raises(col.CollectionNotFoundError, match="images/"):
        col.scan_folder(tmp_path / "flat")
    root = tmp_path / "nothing_good"
    save(photo_of(blob()), root / "images" / "a.png")
    (root / "masks").mkdir()
    with pytest.raises(col.EmptyCollectionError, match="images/a.png") as caught:
        col.read_folder(root)
    assert [s.file for s in caught.value.skipped] == ["images/a.png"]


@pytest.mark.parametrize("name", ["", "../up", "a/b", "/abs", ".hidden", "test", "Train", "x" * 65, "a b"])
def test_collection_names_cannot_escape_or_shadow_a_split(name):
    with pytest.raises(col.CollectionNameError):
        col.check_name(name)


def test_names_made_from_folders_are_valid():
    assert col.check_name("my-photos_2.0") == "my-photos_2.0"
    assert col.slugify("My Photos (June)!") == "My-Photos-June"
    assert col.slugify("test") == "test-photos" and col.slugify("???") == "collection"


def test_species_file_names_the_species(tmp_path):
    root = write_folder(tmp_path / "sp", ("zero_255", "zero_one"))
    (root / "species.csv").write_text("image,species\nzero_255.png,Vanessa cardui\nzero_one,Pieris rapae\n")
    collection = col.read_folder(root)
    assert {p.id: p.species for p in collection.pairs} == {"zero_255": "Vanessa cardui", "zero_one": "Pieris rapae"}
    assert collection.has_species


# --- COCO ----------------------------------------------------------------------------------------------------------


def coco_collection(root, with_polygons: bool):
    """Photos with one or two butterflies and our own COCO export of their masks; returns the masks by stem."""
    builder = annotations.CocoBuilder()
    masks = {}
    for number in range(3):
        mask = blob(shift=number)
        if number == 1:  # two butterflies on one photo: their instances are merged
            mask = np.zeros((40, 60), bool)
            mask[5:15, 5:20] = mask[20:35, 30:55] = True
        if number == 2:  # a hole, which polygons cannot draw: the export keeps RLE for it
            mask[10:14, 14:18] = False
        save(photo_of(mask), root / "photos" / f"p{number}.png")
        builder.add_image(
            f"p{number}.png", mask.shape[1], mask.shape[0], annotations.instances(mask, None, with_polygons)
        )
        masks[f"p{number}"] = mask
    builder.write(root / "coco.json")
    return masks


@pytest.mark.parametrize("with_polygons", [False, True], ids=["rle", "polygons"])
def test_our_coco_export_reads_back_exactly(tmp_path, with_polygons):
    masks = coco_collection(tmp_path, with_polygons)
    collection = col.read_coco(tmp_path / "coco.json", tmp_path / "photos")
    assert collection.skipped == [] and collection.conventions == {"COCO": 3}
    for photo in collection.photos():
        assert np.array_equal(photo.mask, masks[photo.id]), photo.id


def test_coco_polygons_reaching_far_outside_the_photo_are_cut_at_its_edge(tmp_path):
    save(photo_of(blob()), tmp_path / "photos" / "far.png")
    huge = [[-1e9, -1e9, 1e9, -1e9, 1e9, 1e9, -1e9, 1e9]]
    coco = {"images": [{"id": 1, "file_name": "far.png"}], "annotations": [{"image_id": 1, "segmentation": huge}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    assert next(col.read_coco(tmp_path / "coco.json", tmp_path / "photos").photos()).mask.all()


def test_coco_round_trip_through_the_cli_scores_iou_one(tmp_path):
    coco_collection(tmp_path, with_polygons=True)
    summary_file = tmp_path / "summary.json"
    evaluate_cli.main(
        ["--coco", str(tmp_path / "coco.json"), "--images", str(tmp_path / "photos"), "--models", "otsu"]
        + ["--summary-json", str(summary_file), "--no-progress"]
    )
    summary = json.loads(summary_file.read_text())
    assert summary["otsu"]["n"] == 3
    assert summary["otsu"]["iou_per_photo"] == summary["otsu"]["iou_whole_set"] == 1.0
    assert summary["otsu"]["boundary_iou"] == 1.0 and summary["mask_conventions"] == {"COCO": 3}
    rows = results.load_eval(tmp_path / "eval_coco.csv")
    assert set(rows["split"]) == {"coco"} and sorted(rows["image_id"].unique()) == ["p0", "p1", "p2"]


def test_broken_coco_entries_are_skipped_with_reasons(tmp_path):
    mask = blob()
    for name in ("good", "bad_polygon", "bad_rle", "bad_runs", "unlabelled", "stray"):
        save(photo_of(mask), tmp_path / "photos" / f"{name}.png")
    good = annotations.instances(mask)[0]
    truncated = good["segmentation"] | {"counts": good["segmentation"]["counts"][:-2]}
    coco = {
        "images": [
            {"id": i, "file_name": f"{name}.png", "width": SHAPE[1], "height": SHAPE[0]}
            for i, name in enumerate(["good", "bad_polygon", "bad_rle", "unlabelled", "missing", "bad_runs"], start=1)
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": good["segmentation"]},
            {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[1, 2, 3, 4]]},
            {"id": 3, "image_id": 3, "category_id": 1, "segmentation": {"size": [5, 5], "counts": "abc"}},
            {"id": 4, "image_id": 99, "category_id": 1, "segmentation": good["segmentation"]},
            {"id": 5, "image_id": 1, "category_id": 1},
            # Runs that stop short of the photo: pycocotools would decode them past its buffer.
            {"id": 6, "image_id": 6, "category_id": 1, "segmentation": truncated},
        ],
        "categories": [{"id": 1, "name": "butterfly"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    collection = col.read_coco(tmp_path / "coco.json", tmp_path / "photos", name="web")
    assert [p.id for p in collection.pairs] == ["good"] and not collection.has_species
    reasons = {s.file: s.reason for s in collection.skipped}
    assert "annotation 2: broken segmentation" in reasons["bad_polygon.png"]
    assert "annotation 3: broken segmentation" in reasons["bad_rle.png"]
    assert "image id 99" in reasons["coco.json: annotation 4"]
    assert "no segmentation" in reasons["coco.json: annotation #5"]
    assert "no annotation" in reasons["unlabelled.png"]
    assert "annotation 6: broken segmentation (RLE runs cover" in reasons["bad_runs.png"]
    assert "not found" in reasons["missing.png"]
    assert "not listed" in reasons["photos/stray.png"]


def test_coco_categories_are_species_when_there_are_several(tmp_path):
    mask = blob()
    for name in ("a", "b"):
        save(photo_of(mask), tmp_path / "photos" / f"{name}.png")
    segmentation = annotations.instances(mask)[0]["segmentation"]
    coco = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "segmentation": segmentation},
            {"id": 2, "image_id": 2, "category_id": 8, "segmentation": segmentation},
        ],
        "categories": [{"id": 7, "name": "Monarch"}, {"id": 8, "name": "Painted Lady"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    collection = col.read_coco(tmp_path / "coco.json", tmp_path / "photos")
    assert [p.species for p in collection.pairs] == ["Monarch", "Painted Lady"]


def test_a_file_that_is_not_coco_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(col.CocoFormatError, match="JSON"):
        col.scan_coco(tmp_path / "bad.json", tmp_path / "photos")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(col.CocoFormatError, match="images"):
        col.scan_coco(tmp_path / "list.json", tmp_path / "photos")


# --- The command line ----------------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "seg_core.evaluate", *args, "--no-progress"]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_cli_evaluates_the_good_pairs_and_names_the_broken_files(tmp_path):
    root = write_folder(tmp_path / "garden", ("zero_255", "zero_one", "palette", "label_38"), broken=True)
    summary_file = tmp_path / "out" / "summary.json"
    done = run_cli("--folder", str(root), "--models", "otsu", "--summary-json", str(summary_file))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    for file in BROKEN:
        assert file in done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["otsu"]["n"] == 4 and summary["otsu"]["iou_per_photo"] == 1.0
    assert {item["file"] for item in summary["skipped"]} == set(BROKEN)
    assert summary["mask_conventions"] == {"0/255": 1, "0/1": 1, "palette": 1, "any non-zero": 1}
    rows = pd.read_csv(root / "eval_garden.csv")
    assert list(rows.columns) == results.EVAL_COLUMNS
    assert set(rows["split"]) == {"garden"} and rows["species"].isna().all()
    assert (root / "eval_garden.json").is_file()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--folder", "{tmp}/absent"], "no folder"),
        (["--folder", "{tmp}/empty"], "no usable photo-and-mask pair"),
        (["--coco", "{tmp}/absent.json", "--images", "{tmp}"], "no COCO file"),
        (["--folder", "{tmp}/one", "--models", "no-such-model"], "unknown model"),
        (["--folder", "{tmp}/one", "--name", "../escape"], "not a usable collection name"),
    ],
)
def test_cli_refuses_unusable_input_without_a_traceback(tmp_path, arguments, message):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    (tmp_path / "empty" / "images" / "readme.txt").write_text("nothing here")
    write_folder(tmp_path / "one", ("zero_255",))
    done = run_cli(*(a.format(tmp=tmp_path) for a in arguments))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


class DarkIsButterfly(Predictor):
    """A fake fast model: the darker a pixel, the likelier butterfly (exact on :func:`photo_of` photos)."""

    name = "dark"

    def predict_proba(self, image, options=None):
        return (1.0 - image.mean(axis=2) / 255.0).astype(np.float32)


@pytest.fixture
def fake_models(monkeypatch):
    """``dark`` (the fake above) and ``otsu`` are the only models the evaluation library knows."""
    from seg_core.runtime.baselines import OtsuBaseline

    made = {"dark": DarkIsButterfly, "otsu": OtsuBaseline}
    monkeypatch.setattr(evaluation, "available_predictors", lambda models_dir=None: list(made))
    monkeypatch.setattr(evaluation, "load_predictor", lambda name, models_dir=None: made[name]())
    return made


def test_cli_sweeps_thresholds_and_takes_default_models(tmp_path, fake_models, capsys):
    root = write_folder(tmp_path / "sweep", ("zero_255", "soft_edges", "sixteen_bit"))
    evaluate_cli.main(["--folder", str(root), "--no-progress", "--out-dir", str(tmp_path / "out")])
    rows = results.load_eval(tmp_path / "out" / "eval_sweep.csv")
    assert sorted(rows["model"].unique()) == ["dark", "otsu"]
    assert sorted(rows.loc[rows["model"] == "dark", "threshold"].unique()) == list(evaluation.THRESHOLDS)
    assert rows.loc[rows["model"] == "otsu", "threshold"].isna().all()
    assert (rows["height"] == SHAPE[0]).all() and (rows["width"] == SHAPE[1]).all()
    output = capsys.readouterr()
    assert "collection sweep, threshold 0.5" in output.out and "masks read as: 0/255 (3 photos)" in output.err


def test_evaluated_collections_are_found_by_their_results(tmp_path, fake_models):
    write_folder(tmp_path / "a", ("zero_255",))
    write_folder(tmp_path / "b", ("zero_one",))
    (tmp_path / ".a.partial").mkdir()
    evaluation.evaluate_collection(col.read_folder(tmp_path / "a"), tmp_path / "a", ["otsu"], progress=False)
    found = evaluation.evaluated_collections(tmp_path)
    assert [(c.name, c.folder.name) for c in found] == [("a", "a")]
    notes = evaluation.read_notes(found[0].summary_file)
    assert notes.conventions == (("0/255", 1),) and notes.skipped == ()
    assert evaluation.evaluated_collections(tmp_path / "absent") == []


def test_collection_ids_keep_their_names_and_leeds_ids_their_zeros(tmp_path):
    rows = pd.DataFrame(
        [
            {"image_id": "12", "species": "", "split": "garden"},
            {"image_id": "10001", "species": "1", "split": "test"},
        ]
    ).assign(model="m", kind="unet", height=2, width=2, threshold=0.5, tp=1, fp=1, fn=1, tn=1)
    rows = rows.assign(boundary_intersection=1, boundary_union=2, infer_ms=1.0)[results.EVAL_COLUMNS]
    rows.to_csv(tmp_path / "eval.csv", index=False)
    loaded = results.load_eval(tmp_path / "eval.csv")
    assert loaded["image_id"].tolist() == ["12", "0010001"]
    assert pd.isna(loaded["species"].iloc[0]) and loaded["species"].iloc[1] == "001"


def test_model_against_model_pairs_photos(tmp_path, fake_models):
    root = write_folder(tmp_path / "vs", ("zero_255", "zero_one"))
    done = evaluation.evaluate_collection(col.read_folder(root), root, ["dark", "otsu"], progress=False)
    table = results.model_against_model(done.rows, "dark", "otsu", 0.5)
    assert table["image_id"].tolist() == ["zero_255", "zero_one"]
    assert table["first"].tolist() == table["second"].tolist() == [1.0, 1.0] and (table["difference"] == 0).all()


# --- ZIP uploads ---------------------------------------------------------------------------------------------------


def test_a_zip_unpacks_from_its_top_or_its_one_folder(tmp_path):
    root = write_folder(tmp_path / "src", ("zero_255", "palette"))
    members = {"__MACOSX/._x": b"", "garden/.DS_Store": b""}
    data = zip_of(members | {f"garden/{p.relative_to(root)}": p.read_bytes() for p in root.rglob("*") if p.is_file()})
    unpacked = col.extract_zip(data, tmp_path / "one")
    assert unpacked.name == "garden" and len(col.read_folder(unpacked).pairs) == 2
    assert col.extract_zip(folder_zip(root), tmp_path / "top") == tmp_path / "top"


@pytest.mark.parametrize(
    "members, message",
    [
        ({"../evil.png": b"x"}, "'..'"),
        ({"images/../../evil.png": b"x"}, "'..'"),
        ({"/etc/evil.png": b"x"}, "absolute"),
        ({"C:/evil.png": b"x"}, "absolute"),
    ],
)
def test_unsafe_zips_are_refused(tmp_path, members, message):
    with pytest.raises(col.ArchiveError, match=message):
        col.extract_zip(zip_of(members), tmp_path / "out")
    assert not (tmp_path / "evil.png").exists()


def test_zip_links_sizes_and_counts_are_limited(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("images/link.png")
        link.external_attr = (0o120777 << 16) | 0
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(col.ArchiveError, match="symbolic link"):
        col.extract_zip(buffer.getvalue(), tmp_path / "link")
    three = zip_of({f"images/{n}.png": b"x" * 10 for n in range(3)})
    with pytest.raises(col.ArchiveError, match="3 files"):
        col.extract_zip(three, tmp_path / "count", max_files=2)
    with pytest.raises(col.ArchiveError, match="MB"):
        col.extract_zip(three, tmp_path / "size", max_bytes=20)
    with pytest.raises(col.ArchiveError, match="not a readable ZIP"):
        col.extract_zip(b"PK\x03\x04 broken", tmp_path / "broken")
    with pytest.raises(col.CollectionNotFoundError, match="images/"):
        col.extract_zip(zip_of({"photos/a.png": b"x"}), tmp_path / "layout")


# --- The background job --------------------------------------------------------------------------------------------


def test_the_job_runner_runs_one_job_at_a_time_and_cancels():
    runner = jobs.JobRunner()
    release = threading.Event()

    def slow(context):
        for step in range(1000):
            context.progress(step, 1000, f"step {step}")
            context.log(f"step {step}")
            release.wait(0.01)
        return "finished"

    first = runner.start("slow", slow)
    with pytest.raises(jobs.JobBusyError, match="slow"):
        runner.start("second", slow)
    assert runner.running().id == first.id
    assert runner.cancel(first.id)
    ended = runner.wait(first.id, timeout=10)
    assert ended.state == jobs.CANCELLED and ended.log and ended.finished
    quick = runner.wait(runner.start("quick", lambda context: 42).id, timeout=10)
    assert quick.state == jobs.DONE and quick.result == 42 and quick.fraction == 0.0

    def broken(context):
        raise col.CollectionError("no photos")

    failed = runner.wait(runner.start("broken", broken).id, timeout=10)
    assert failed.state == jobs.FAILED and isinstance(failed.error, col.CollectionError)
    assert runner.cancel(failed.id) is False and runner.status(12345) is None


@pytest.fixture
def counted_slots(monkeypatch):
    """Every admission slot taken, by cost."""
    taken = []

    class Gate:
        @contextlib.contextmanager
        def slot(self, cost=1, timeout=None, on_wait=None, poll_s=0.25):
            taken.append(cost)
            yield

    monkeypatch.setattr(collection_eval, "process_admission", Gate)
    return taken


def test_an_uploaded_zip_is_evaluated_in_admission_slots_and_published(tmp_path, counted_slots):
    root = write_folder(tmp_path / "src", ("zero_255", "zero_one", "label_38"), broken=True)
    runner = jobs.JobRunner()
    predictors = {"dark": DarkIsButterfly()}
    started = collection_eval.start_collection_evaluation(
        collection_eval.ZipUpload(folder_zip(root, "garden/")), "garden", tmp_path / "library", predictors, runner
    )
    done = runner.wait(started.id, timeout=60)
    assert done.state == jobs.DONE, done.message
    assert done.result == evaluation.EvaluatedCollection("garden", tmp_path / "library" / "garden")
    assert [c.name for c in evaluation.evaluated_collections(tmp_path / "library")] == ["garden"]
    rows = results.load_eval(done.result.eval_file)
    assert rows["image_id"].nunique() == 3 and set(rows["model"]) == {"dark"}
    # One slot per pair checked (3 good, 3 broken once decoded) and one per pair evaluated.
    assert len(counted_slots) == 6 + 3
    assert {s.file for s in evaluation.read_notes(done.result.summary_file).skipped} == set(BROKEN)
    assert sorted(p.name for p in (tmp_path / "library").iterdir()) == ["garden"]
    with pytest.raises(col.CollectionNameError, match="exists already"):
        collection_eval.start_collection_evaluation(
            collection_eval.ZipUpload(folder_zip(root)), "garden", tmp_path / "library", predictors, runner
        )


def test_a_coco_upload_keeps_its_masks_as_a_folder(tmp_path, counted_slots):
    masks = coco_collection(tmp_path, with_polygons=False)
    photos = tuple((p.name, p.read_bytes()) for p in sorted((tmp_path / "photos").iterdir()))
    upload = collection_eval.CocoUpload((tmp_path / "coco.json").read_bytes(), photos)
    runner = jobs.JobRunner()
    predictors = {"dark": DarkIsButterfly()}
    started = collection_eval.start_collection_evaluation(upload, "coco-up", tmp_path / "lib", predictors, runner)
    done = runner.wait(started.id, timeout=60)
    assert done.state == jobs.DONE, done.message
    folder = done.result.folder
    for stem, mask in masks.items():
        assert np.array_equal(np.asarray(Image.open(folder / "masks" / f"{stem}.png")) > 0, mask)
    assert json.loads(done.result.summary_file.read_text())["dark"]["iou_per_photo"] == 1.0


@pytest.mark.parametrize(
    "upload, message",
    [
        (collection_eval.ZipUpload(b"not a zip"), "not a ZIP"),
        (collection_eval.CocoUpload(b"{}", ()), "add the photos"),
    ],
)
def test_bad_uploads_are_refused_before_a_job_starts(tmp_path, upload, message):
    runner = jobs.JobRunner()
    with pytest.raises(col.CollectionError, match=message):
        collection_eval.start_collection_evaluation(upload, "x", tmp_path, {}, runner)
    assert runner.running() is None


def test_a_zip_without_pairs_fails_its_job_and_leaves_nothing(tmp_path, counted_slots):
    runner = jobs.JobRunner()
    data = zip_of({"images/a.png": png_bytes(Image.fromarray(photo_of(blob()))), "masks/readme.txt": b"x"})
    started = collection_eval.start_collection_evaluation(
        collection_eval.ZipUpload(data), "lonely", tmp_path, {"dark": DarkIsButterfly()}, runner
    )
    done = runner.wait(started.id, timeout=60)
    assert done.state == jobs.FAILED and isinstance(done.error, col.EmptyCollectionError)
    assert "images/a.png" in done.message and list(tmp_path.iterdir()) == []
