"""File names, encoded PNGs and ZIP archives shared by the batch CLI and the pages."""

import io
import zipfile

from seg_core.outputs import files as outputs
from seg_core.service import batch as predict


def test_the_batch_cli_and_the_pages_name_outputs_alike():
    assert (predict.MASK_SUFFIX, predict.CUTOUT_SUFFIX) == (outputs.MASK_SUFFIX, outputs.CUTOUT_SUFFIX)


def test_stem_drops_folders_and_the_last_extension():
    assert outputs.stem("a/b.photo.jpg") == "b.photo"
    assert outputs.stem("c:\\x\\y.png") == "y"
    assert outputs.stem(".hidden") == ".hidden"
    assert outputs.stem("noext") == "noext"


def test_match_truth_pairs_masks_by_file_name():
    photos = ["a.jpg", "b.jpeg", "c.png", "dir/d.jpg"]
    masks = ["a_seg0.png", "b_mask.png", "x.png", "d.png"]
    assert outputs.match_truth(photos, masks) == {"a.jpg": "a_seg0.png", "b.jpeg": "b_mask.png", "dir/d.jpg": "d.png"}
    assert outputs.unmatched_masks(photos, masks) == ["x.png"]


def test_a_second_mask_for_the_same_photo_is_unmatched():
    assert outputs.match_truth(["a.jpg"], ["a_seg0.png", "a_mask.png"]) == {"a.jpg": "a_seg0.png"}
    assert outputs.unmatched_masks(["a.jpg"], ["a_seg0.png", "a_mask.png"]) == ["a_mask.png"]
    assert outputs.unmatched_masks([], ["a.png"]) == ["a.png"]


def test_output_names_are_unique_in_a_batch():
    names = outputs.output_names(["a.jpg", "a.png", "a-2.jpg", "noext"])
    assert [mask for mask, _ in names] == ["a_mask.png", "a-2_mask.png", "a-2-2_mask.png", "noext_mask.png"]
    assert names[0][1] == "a_cutout.png"


def test_zip_files_round_trip():
    data = outputs.zip_files([("a_mask.png", b"1"), ("a_cutout.png", b"22")])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["a_mask.png", "a_cutout.png"] and archive.read("a_cutout.png") == b"22"
