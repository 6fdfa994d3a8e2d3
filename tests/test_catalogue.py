"""The model catalogue and the shipped samples, read without loading any weights."""

import sys

from seg_core.data.leeds import Sample
from seg_core.runtime.catalogue import CATALOGUE_COLUMNS, model_catalogue, sample_label, sample_photos
from seg_core.runtime.registry import available_predictors


def test_catalogue_reads_cards_without_loading_weights():
    loaded_tensorflow = "tensorflow" in sys.modules
    table = model_catalogue()
    assert list(table.columns) == CATALOGUE_COLUMNS
    assert list(table["model"]) == available_predictors()
    best = table.set_index("model").loc["unet-best"]
    assert best["kind"] == "unet" and best["parameters"] > 0 and best["recipe"] and best["file_mb"] > 0
    assert (table["kind"] == "baseline").any()
    assert ("tensorflow" in sys.modules) == loaded_tensorflow


def test_samples_are_paired_with_their_masks(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("0020001", "0010002", "0030003"):
        (tmp_path / "images" / f"{name}.jpg").write_bytes(b"")
    for name in ("0020001", "0010002"):
        (tmp_path / "masks" / f"{name}_seg0.png").write_bytes(b"")
    assert [s.id for s in sample_photos(tmp_path)] == ["0010002", "0020001"]
    assert sample_photos()  # the shipped samples


def test_sample_label_names_the_species():
    sample = Sample("0010010", None, None)
    species = {"001": {"common": "Monarch", "latin": "Danaus plexippus"}}
    assert sample_label(sample, species) == "0010010 - Monarch (Danaus plexippus)"
    assert sample_label(sample, {}) == "0010010"
