import json

import numpy as np
import pytest
from PIL import Image

from seg_core.core.imaging import InvalidImageError, load_mask
from seg_core.data import leeds as data


def _write_rgb_mask(path, fg: np.ndarray) -> None:
    # 0/255 with an anti-aliased value on the edge, like the resized local copy.
    values = np.where(fg, 255, 0).astype(np.uint8)
    values[0, 0] = 200  # edge pixel above 128: foreground
    values[0, 1] = 60  # edge pixel below 128: background
    Image.fromarray(np.stack([values] * 3, axis=-1)).save(path)


def _write_palette_mask(path, fg: np.ndarray) -> None:
    # Official release: palette PNG, foreground values 1 and 3, others background.
    values = np.where(fg, 1, 0).astype(np.uint8)
    values[-1, -1] = 3
    values[-1, 0] = 2
    img = Image.fromarray(values, "P")
    img.putpalette([0, 0, 0, 255, 255, 255, 128, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 12))
    img.save(path)


@pytest.fixture
def leeds(tmp_path):
    """A tiny folder in the official layout with every awkward case."""
    (tmp_path / "images").mkdir()
    (tmp_path / "segmentations").mkdir()
    (tmp_path / "descriptions").mkdir()
    fg = np.zeros((6, 8), dtype=bool)
    fg[2:5, 3:7] = True
    photo = Image.fromarray(np.full((6, 8, 3), 90, dtype=np.uint8))
    photo.save(tmp_path / "images" / "0010001.jpg")
    _write_rgb_mask(tmp_path / "segmentations" / "0010001_seg0.png", fg)
    photo.save(tmp_path / "images" / "0020001.png")
    _write_palette_mask(tmp_path / "segmentations" / "0020001_seg0.png", fg)
    photo.save(tmp_path / "images" / "0030001.jpg")  # no mask
    (tmp_path / "images" / "0040001.jpg").write_bytes(b"this is not a jpeg")
    _write_rgb_mask(tmp_path / "segmentations" / "0040001_seg0.png", fg)
    _write_rgb_mask(tmp_path / "segmentations" / "0050001_seg0.png", fg)  # no image
    (tmp_path / "descriptions" / "001.txt").write_text("Danaus plexippus\nMonarch\nOrange wings.\n")
    (tmp_path / "descriptions" / "002.txt").write_text("Heliconius charitonius\nZebra Longwing\n")
    return tmp_path, fg


def test_scan_pairs_by_id_whatever_the_extension(leeds):
    root, _ = leeds
    scan = data.scan_dataset(root)
    assert [s.id for s in scan.samples] == ["0010001", "0020001", "0040001"]
    assert scan.samples[1].image_path.suffix == ".png"
    assert scan.missing_masks == ["0030001"]
    assert scan.orphan_masks == ["0050001"]
    assert scan.samples[0].species == "001"


def test_both_mask_conventions_binarise_the_same(leeds):
    root, fg = leeds
    rgb = load_mask(root / "segmentations" / "0010001_seg0.png")
    palette = load_mask(root / "segmentations" / "0020001_seg0.png")
    expected_rgb = fg.copy()
    expected_rgb[0, 0], expected_rgb[0, 1] = True, False
    np.testing.assert_array_equal(rgb, expected_rgb)
    expected_palette = fg.copy()
    expected_palette[-1, -1], expected_palette[-1, 0] = True, False
    np.testing.assert_array_equal(palette, expected_palette)


def test_unreadable_files_are_skipped(leeds):
    root, _ = leeds
    scan = data.scan_dataset(root)
    with pytest.raises(InvalidImageError):
        data.load_pair(scan.samples[2])
    kept, images, masks = data.load_pairs(scan.samples)
    assert [s.id for s in kept] == ["0010001", "0020001"]
    assert images[0].shape == (6, 8, 3) and masks[0].shape == (6, 8)


def test_species_names_from_descriptions(leeds):
    root, _ = leeds
    assert data.species_names(root) == {
        "001": ("Danaus plexippus", "Monarch"),
        "002": ("Heliconius charitonius", "Zebra Longwing"),
    }


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(data.DatasetNotFoundError, match="--data DIR or the WINGMASK_DATA"):
        data.resolve_data_dir()
    assert data.dataset_available() is None


def test_environment_variable_selects_the_folder(leeds, monkeypatch):
    root, _ = leeds
    monkeypatch.setenv(data.DATA_ENV, str(root))
    assert data.resolve_data_dir() == root


def test_split_is_deterministic_stratified_and_disjoint():
    ids = [f"{sp:03d}{n:04d}" for sp in range(1, 11) for n in range(40)]
    split = data.make_split(ids, seed=7)
    assert split == data.make_split(list(reversed(ids)), seed=7)
    assert split != data.make_split(ids, seed=8)
    sets = [set(split[name]) for name in data.SPLITS]
    assert sum(len(s) for s in sets) == len(ids) and set.union(*sets) == set(ids)
    for species in {i[:3] for i in ids}:
        counts = [sum(i.startswith(species) for i in split[name]) for name in data.SPLITS]
        assert counts == [28, 6, 6]


def test_committed_split_file_is_consistent():
    payload = json.loads(data.SPLIT_FILE.read_text())
    split = data.load_split()
    assert payload["seed"] == 42
    assert {len(split[name]) for name in ("val", "test")} == {112}
    assert not set(split["train"]) & set(split["test"]) and not set(split["val"]) & set(split["test"])
    assert split == data.make_split(split["train"] + split["val"] + split["test"], seed=payload["seed"])
    assert len(data.load_species()) == 10
