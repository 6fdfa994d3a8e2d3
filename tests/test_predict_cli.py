"""The batch CLI: masks and cut-outs for a folder, bad files skipped, resume, no overwriting of inputs."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from seg_core import predict
from seg_core.data import REPO_ROOT
from seg_core.imaging import load_image, load_mask
from seg_core.inference import Predictor, load_predictor
from seg_core.metrics import confusion, iou

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
    return predict.main([*map(str, args), "--model", MODEL, "--no-progress"])


def test_writes_masks_and_cutouts_and_reports_bad_files(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(photos, "--out", out, "--cutout") == predict.EXIT_SOME_FAILED
    summary = capsys.readouterr().out
    assert "2 written, 0 already done (skipped), 1 failed, 1 non-photo files ignored" in summary
    assert "notes.jpg: not a readable image" in summary
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{p.stem}{suffix}" for p in PHOTOS for suffix in (predict.MASK_SUFFIX, predict.CUTOUT_SUFFIX)
    )
    for photo in PHOTOS:
        mask = load_mask(out / f"{photo.stem}_mask.png")
        assert iou(confusion(mask, load_mask(SAMPLES / "masks" / f"{photo.stem}_seg0.png"))) > 0.8
        rgba = np.asarray(Image.open(out / f"{photo.stem}_cutout.png"))
        assert rgba.shape == (*mask.shape, 4)
        assert np.array_equal(rgba[..., 3] == 255, mask)
        assert np.array_equal(rgba[..., :3], load_image(photo))


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
        predict.main([str(photos), "--out", str(tmp_path / "o"), "--model", "no-such-model"])
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
