"""The batch CLI: masks and cut-outs for a folder, bad files skipped, resume, no overwriting of inputs."""

import csv
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from seg_core import predict as predict_cli
from seg_core.core.imaging import load_image, load_mask
from seg_core.core.metrics import confusion, iou
from seg_core.core.paths import REPO_ROOT
from seg_core.outputs import files
from seg_core.outputs.postprocess import removed_pixels
from seg_core.runtime.base import Predictor
from seg_core.runtime.registry import load_predictor
from seg_core.service import batch as predict

SAMPLES = REPO_ROOT / "samples"
PHOTOS = sorted((SAMPLES / "images").glob("*.jpg"))[:2]
MODEL = "unet-light"


class CountingPredictor(Predictor):
    """Wraps a real predictor and counts the photos it segments."""

    def __init__(self, inner: Predictor):
        self.inner, self.name, self.calls = inner, inner.name, 0

    def predict_proba(self, image):
        self.calls += 1
        return self.inner.predict_proba(image)


@pytest.fixture(scope="module")
def model():
    return load_predictor(MODEL)


@pytest.fixture
def photos(tmp_path):
    """Two sample photos, a text file posing as a JPEG and a non-photo file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in PHOTOS:
        shutil.copy(photo, folder)
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "README.txt").write_text("photos from the field trip")
    (folder / ".hidden.jpg").write_text("editor swap file")
    return folder


def run(*args: str) -> int:
    return predict_cli.main([*map(str, args), "--model", MODEL, "--no-progress"])


def test_writes_masks_and_cutouts_and_reports_bad_files(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(photos, "--out", out, "--cutout") == predict.EXIT_SOME_FAILED
    summary = capsys.readouterr().out
    assert "2 written, 0 already done (skipped), 1 failed, 1 non-photo files ignored" in summary
    assert "notes.jpg: not a readable image" in summary
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{p.stem}{suffix}" for p in PHOTOS for suffix in (files.MASK_SUFFIX, files.CUTOUT_SUFFIX)
    )
    for photo in PHOTOS:
        mask = load_mask(out / f"{photo.stem}_mask.png")
        assert iou(confusion(mask, load_mask(SAMPLES / "masks" / f"{photo.stem}_seg0.png"))) > 0.8
        rgba = np.asarray(Image.open(out / f"{photo.stem}_cutout.png"))
        assert rgba.shape == (*mask.shape, 4)
        assert np.array_equal(rgba[..., 3] == 255, mask)
        assert np.array_equal(rgba[..., :3][mask], load_image(photo)[mask]) and not rgba[..., :3][~mask].any()


def test_second_run_resumes_and_overwrite_redoes(photos, tmp_path, model):
    (photos / "notes.jpg").unlink()
    out = tmp_path / "out"
    counting = CountingPredictor(model)
    first = predict.run_batch(photos, out, counting, progress=False)
    assert first.written == [p.name for p in PHOTOS] and first.exit_code == predict.EXIT_OK
    (out / f"{PHOTOS[0].stem}_mask.png").unlink()
    again = predict.run_batch(photos, out, counting, progress=False)
    assert again.written == [PHOTOS[0].name] and again.already_done == [PHOTOS[1].name]
    assert counting.calls == 3
    # Asking for cut-outs too makes every photo incomplete.
    redo = predict.run_batch(photos, out, counting, with_cutout=True, progress=False)
    assert redo.written == [p.name for p in PHOTOS]
    forced = predict.run_batch(photos, out, counting, overwrite=True, progress=False)
    assert forced.written == [p.name for p in PHOTOS] and counting.calls == 7
    assert not list(out.glob(".*"))


def test_threshold_and_clean_up_change_the_mask(photos, tmp_path, model):
    (photos / "notes.jpg").unlink()
    loose, strict = tmp_path / "loose", tmp_path / "strict"
    predict.run_batch(photos, loose, model, threshold=0.05, progress=False)
    predict.run_batch(photos, strict, model, threshold=0.95, clean=["largest", "holes"], progress=False)
    name = f"{PHOTOS[0].stem}_mask.png"
    assert load_mask(strict / name).sum() < load_mask(loose / name).sum()


def test_same_stem_twice_is_reported_not_overwritten(photos, tmp_path, model):
    shutil.copy(PHOTOS[0], photos / f"{PHOTOS[0].stem}.png")
    report = predict.run_batch(photos, tmp_path / "out", model, progress=False)
    assert f"same file name as {PHOTOS[0].name}" in report.failed[f"{PHOTOS[0].stem}.png"]


@pytest.mark.parametrize("where", ["same", "trailing_slash", "symlink"])
def test_refuses_the_input_folder_as_output(photos, tmp_path, capsys, where):
    out = {"same": photos, "trailing_slash": f"{photos}/", "symlink": tmp_path / "link"}[where]
    if where == "symlink":
        out.symlink_to(photos, target_is_directory=True)
    before = sorted(p.name for p in photos.iterdir())
    with pytest.raises(SystemExit) as stopped:
        run(photos, "--out", out)
    assert stopped.value.code == predict.EXIT_USAGE
    assert "is the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == before


def test_refuses_an_output_that_is_an_input(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{PHOTOS[0].stem}_mask.png").symlink_to(photos / PHOTOS[0].name)
    with pytest.raises(predict.OutputConflictError, match="would overwrite an input file"):
        predict.check_no_overwrite(photos, out, sorted(photos.iterdir()), with_cutout=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--out", "{out}"], "is not a folder"),
        (["{empty}", "--out", "{out}"], "holds no photos"),
        (["{photos}", "--out", "{out}", "--threshold", "1.5"], "not between 0 and 1"),
        (["{photos}", "--out", "{photos}/notes.jpg"], "is a file, not a folder"),
    ],
)
def test_usage_errors_exit_with_2(photos, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    folders = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "photos": photos, "out": tmp_path / "o"}
    with pytest.raises(SystemExit) as stopped:
        run(*(a.format(**folders) for a in args))
    assert stopped.value.code == predict.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unknown_model_exits_with_2(photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        predict_cli.main([str(photos), "--out", str(tmp_path / "o"), "--model", "no-such-model"])
    assert stopped.value.code == predict.EXIT_USAGE
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_only_unreadable_files_exit_with_1(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    assert run(folder, "--out", tmp_path / "out") == predict.EXIT_SOME_FAILED
    assert "a.png: the file is empty" in capsys.readouterr().out


def test_help_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "seg_core.predict", "--help"], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert done.returncode == 0 and "--cutout" in done.stdout and "--overwrite" in done.stdout


class BarPredictor(Predictor):
    """A made-up model: a butterfly-sized disc and a thin 'scale bar', with soft probability edges."""

    name = "bar"

    def predict_proba(self, image, options=None):
        height, width = image.shape[:2]
        yy, xx = np.mgrid[0:height, 0:width]
        disc = np.clip((0.3 * min(height, width) - np.hypot(yy - height / 2, xx - width / 2)) / 4 + 0.5, 0, 1)
        bar = np.zeros((height, width), np.float32)
        bar[height - 12 : height - 8, 10:30] = 0.9
        return np.maximum(disc, bar).astype(np.float32)


def test_coco_file_soft_cutouts_and_measurements_from_one_run(photos, tmp_path, capsys):
    """The issue's bar on the sample photos: COCO loads, annotations redraw each mask, soft alpha at the edge."""
    (photos / "notes.jpg").unlink()
    out = tmp_path / "out"
    coco_path, csv_path = out / "annotations.json", tmp_path / "sizes" / "m.csv"
    args = ["--coco", coco_path, "--cutout", "--soft-edges", "--measurements", csv_path, "--pixels-per-mm", "5"]
    assert run(photos, "--out", out, *args) == predict.EXIT_OK
    assert "2 written" in capsys.readouterr().out
    coco = COCO(str(coco_path))
    assert [i["file_name"] for i in coco.dataset["images"]] == [p.name for p in PHOTOS]
    for image in coco.dataset["images"]:
        stem = image["file_name"].rsplit(".", 1)[0]
        mask = load_mask(out / f"{stem}_mask.png")
        assert (image["height"], image["width"]) == mask.shape
        drawn = np.zeros_like(mask)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            drawn |= coco.annToMask(annotation).astype(bool)
            assert 0.5 <= annotation["score"] <= 1.0
        assert iou(confusion(drawn, mask)) >= 0.99
        alpha = np.asarray(Image.open(out / f"{stem}_cutout.png"))[..., 3]
        edge = mask ^ binary_erosion(mask)
        assert ((alpha[edge] > 0) & (alpha[edge] < 255)).mean() > 0.5
        assert (alpha[~binary_dilation(mask, 12)] == 0).all()
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["photo"] for r in rows} == {p.name for p in PHOTOS}
    assert all(float(r["wingspan_mm"]) == pytest.approx(float(r["wingspan_px"]) / 5, abs=1e-2) for r in rows)


def binary_erosion(mask: np.ndarray) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def binary_dilation(mask: np.ndarray, radius: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)).astype(bool)


def test_default_tidy_drops_the_scale_bar_and_none_keeps_it(photos, tmp_path, monkeypatch):
    (photos / "notes.jpg").unlink()
    monkeypatch.setattr(predict_cli, "load_predictor", lambda name: BarPredictor())
    out_tidy, out_raw = tmp_path / "tidy", tmp_path / "raw"
    assert predict_cli.main([str(photos), "--out", str(out_tidy), "--no-progress"]) == predict.EXIT_OK
    assert predict_cli.main([str(photos), "--out", str(out_raw), "--clean", "none", "--no-progress"]) == predict.EXIT_OK
    name = f"{PHOTOS[0].stem}_mask.png"
    tidy, raw = load_mask(out_tidy / name), load_mask(out_raw / name)
    height = raw.shape[0]
    assert raw[height - 10, 20] and not tidy[height - 10, 20]
    assert (tidy == (raw & ~removed_pixels(raw, tidy))).all() and tidy.sum() > 0.9 * raw.sum()


def test_resumed_batch_still_describes_every_photo(photos, tmp_path):
    (photos / "notes.jpg").unlink()
    out, coco_path = tmp_path / "out", tmp_path / "out" / "annotations.json"
    predict.run_batch(photos, out, BarPredictor(), clean=["tidy"], progress=False)
    (out / f"{PHOTOS[1].stem}_mask.png").unlink()
    counting = CountingPredictor(BarPredictor())
    report = predict.run_batch(photos, out, counting, clean=["tidy"], progress=False)
    assert counting.calls == 1 and report.already_done == [PHOTOS[0].name]
    predict.write_annotations(photos, out, report, coco_path, with_polygons=True, progress=False)
    data = json.loads(coco_path.read_text())
    assert [i["file_name"] for i in data["images"]] == [p.name for p in PHOTOS]
    # The photo done by the first run keeps the score stored in its mask.
    assert all(a["score"] == pytest.approx(0.97, abs=0.03) for a in data["annotations"])
    assert all(isinstance(a["segmentation"], list) for a in data["annotations"])
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"]) == 2


def test_cropped_square_webp_cutout_on_a_colour(photos, tmp_path, monkeypatch):
    (photos / "notes.jpg").unlink()
    monkeypatch.setattr(predict_cli, "load_predictor", lambda name: BarPredictor())
    out = tmp_path / "out"
    args = ["--out", out, "--square", "--background", "#00ff00", "--format", "webp", "--no-progress"]
    assert predict_cli.main([str(photos), *map(str, args)]) == predict.EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{p.stem}{suffix}" for p in PHOTOS for suffix in ("_mask.png", "_cutout.webp")
    )
    picture = Image.open(out / f"{PHOTOS[0].stem}_cutout.webp")
    photo = Image.open(PHOTOS[0])
    assert picture.format == "WEBP" and picture.mode == "RGB"
    assert picture.width == picture.height < max(photo.size)
    corner = np.asarray(picture)[2, 2].astype(int)
    assert abs(corner - (0, 255, 0)).max() < 40


def test_refine_keeps_the_mask_close_and_writes_the_same_files(photos, tmp_path, model):
    (photos / "notes.jpg").unlink()
    plain, refined = tmp_path / "plain", tmp_path / "refined"
    predict.run_batch(photos, plain, model, progress=False)
    options = predict.OutputOptions(refine=True)
    predict.run_batch(photos, refined, model, with_cutout=True, progress=False, options=options)
    name = f"{PHOTOS[0].stem}_mask.png"
    assert iou(confusion(load_mask(refined / name), load_mask(plain / name))) > 0.9
    assert (refined / f"{PHOTOS[0].stem}_cutout.png").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--polygons"], "--polygons needs --coco"),
        (["--pixels-per-mm", "3"], "--pixels-per-mm needs --measurements"),
        (["--measurements", "m.csv", "--pixels-per-mm", "-1"], "not a positive number"),
        (["--background", "not-a-colour"], "not 'transparent', 'blur', a colour"),
        (["--coco", "{photos}"], "is a folder"),
        (["--coco", "{photos}/README.txt"], "would overwrite an input file"),
    ],
)
def test_annotation_and_cutout_usage_errors_exit_with_2(photos, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as stopped:
        run(photos, "--out", tmp_path / "o", *(a.format(photos=photos) for a in extra))
    assert stopped.value.code == predict.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_unreadable_earlier_mask_is_reported_not_annotated(photos, tmp_path):
    (photos / "notes.jpg").unlink()
    out = tmp_path / "out"
    predict.run_batch(photos, out, BarPredictor(), progress=False)
    (out / f"{PHOTOS[0].stem}_mask.png").write_text("damaged")
    report = predict.run_batch(photos, out, BarPredictor(), progress=False)
    predict.write_annotations(photos, out, report, measurements_path=out / "m.csv", progress=False)
    assert "cannot be read" in report.failed[PHOTOS[0].name] and report.exit_code == predict.EXIT_SOME_FAILED
    assert {r["photo"] for r in csv.DictReader((out / "m.csv").read_text().splitlines())} == {PHOTOS[1].name}
