"""``--engine ray``: the batch job on a local Ray, with the local engine's outputs, resume rules and report."""

import shutil

import pytest

from seg_core import predict as predict_cli
from seg_core.core.paths import REPO_ROOT
from seg_core.runtime.registry import load_predictor
from seg_core.service import batch as predict

pytest.importorskip("ray", reason="Ray is not installed (requirements-ray.txt)")

from seg_core.service import ray_engine  # noqa: E402  only importable with Ray

PHOTOS = sorted((REPO_ROOT / "samples" / "images").glob("*.jpg"))[:3]
MODEL = "unet-light"


@pytest.fixture
def photos(tmp_path):
    """Three sample photos, a text file posing as a JPEG, and a non-photo file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in PHOTOS:
        shutil.copy(photo, folder / photo.name)
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "readme.txt").write_text("photos from the field trip")
    return folder


def test_ray_writes_what_the_local_engine_writes_and_resumes(photos, tmp_path):
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    # Output options reach the actors: cropped WebP cut-outs instead of full PNGs.
    job = {"with_cutout": True, "clean": ["tidy"], "options": predict.OutputOptions(crop=True, fmt="webp")}
    local = predict.run_batch(photos, local_out, load_predictor(MODEL), progress=False, **job)
    # Pretend an earlier Ray run stopped after the first photo.
    ray_out.mkdir()
    for done in predict.output_paths(PHOTOS[0], local_out, job["with_cutout"], job["options"]):
        shutil.copy(done, ray_out / done.name)

    report = ray_engine.run_batch_ray(photos, ray_out, MODEL, progress=False, actors=1, **job)

    assert report.already_done == [PHOTOS[0].name]
    assert report.written == [p.name for p in PHOTOS[1:]]
    assert report.failed == local.failed and "not a readable image" in report.failed["notes.jpg"]
    assert report.ignored == local.ignored == ["readme.txt"]
    assert report.exit_code == predict.EXIT_SOME_FAILED
    assert sorted(p.name for p in ray_out.iterdir()) == sorted(p.name for p in local_out.iterdir())
    assert len(list(ray_out.glob("*_cutout.webp"))) == len(PHOTOS)
    for written in local_out.iterdir():
        assert (ray_out / written.name).read_bytes() == written.read_bytes(), written.name


def test_nothing_left_to_do_starts_no_ray(photos, tmp_path, monkeypatch):
    (photos / "notes.jpg").unlink()
    out = tmp_path / "out"
    predict.run_batch(photos, out, load_predictor(MODEL), progress=False)
    monkeypatch.setattr(ray_engine.ray, "init", lambda **kwargs: pytest.fail("Ray was started"))
    report = ray_engine.run_batch_ray(photos, out, MODEL, progress=False)
    assert report.already_done == [p.name for p in PHOTOS] and report.written == []


def test_cli_refuses_an_unknown_model_before_starting_ray(photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        predict_cli.main([str(photos), "--out", str(tmp_path / "o"), "--engine", "ray", "--model", "no-such-model"])
    assert stopped.value.code == predict.EXIT_USAGE
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
