"""Leave-species-out: folds, fold splits, result files, and a tiny run (ten photos, 32 px, one epoch)."""

import pandas as pd
import pytest
from tiny_leeds import tiny_dataset

from seg_core import evaluate as evaluate_cli
from seg_core import train as train_cli
from seg_core.core.paths import RECIPES_DIR
from seg_core.evaluation import generalisation as gen
from seg_core.models.training import train

SPECIES = [f"{k:03d}" for k in range(1, 11)]


def test_species_are_dealt_round_robin_into_folds():
    folds = gen.species_folds(SPECIES)
    assert folds == [["001", "006"], ["002", "007"], ["003", "008"], ["004", "009"], ["005", "010"]]
    assert gen.species_folds(reversed(SPECIES), 2)[0] == ["001", "003", "005", "007", "009"]
    for bad in (1, 11):
        with pytest.raises(ValueError, match="folds need"):
            gen.species_folds(SPECIES, bad)


def test_a_fold_trains_without_its_species_and_tests_on_all_their_photos():
    split = {"train": ["0010001", "0020001"], "val": ["0010002", "0020002"], "test": ["0010003", "0020003"]}
    ids = [i for part in split.values() for i in part]
    assert gen.fold_split(split, ["002"], ids) == {
        "train": ["0010001"],
        "val": ["0010002"],
        "test": ["0020001", "0020002", "0020003"],
    }


def _rows(recipe: str, ious: dict[str, tuple[int, int]]) -> list[dict]:
    """Rows whose photo IoU is tp / (tp + fn) (no false positives): species -> (tp, fn)."""
    return [
        {"recipe": recipe, "fold": 0, "held_out": "x", "image_id": f"{s}0001", "species": s, "height": 1, "width": 1}
        | {"tp": tp, "fp": 0, "fn": fn, "tn": 0, "infer_ms": 1.0}
        for s, (tp, fn) in ious.items()
    ]


def test_summary_gives_the_mean_and_the_worst_species(tmp_path):
    path = tmp_path / "g.csv"
    gen.write_rows(_rows("a", {"001": (1, 1), "002": (3, 1)}) + _rows("b", {"001": (1, 0), "002": (1, 0)}), path)
    summary = gen.summarize(gen.load_generalisation(path))
    assert list(summary.index) == ["b", "a"]
    assert summary.loc["a", "species_mean_iou"] == pytest.approx((0.5 + 0.75) / 2)
    assert (summary.loc["a", "worst_species"], summary.loc["a", "worst_species_iou"]) == ("001", 0.5)
    # A recipe run again replaces its own rows and keeps the others'.
    gen.write_rows(_rows("a", {"001": (1, 0)}), path)
    rows = gen.load_generalisation(path)
    assert sorted(rows["recipe"]) == ["a", "b", "b"] and isinstance(rows, pd.DataFrame)


def test_a_tiny_leave_species_out_run_holds_every_photo_out_once(tmp_path):
    split_file = tiny_dataset(tmp_path / "data")
    argv = ["--model", "unet8", "--data", str(tmp_path / "data"), "--split", str(split_file)]
    args = train_cli.parse_args(argv + ["--size", "32", "--epochs", "1", "--batch-size", "2", "--workers", "1"])
    folds = gen.species_folds(SPECIES, 2)
    rows = gen.run_recipe(args, "tiny", folds, tmp_path / "work", train, progress=False)
    frame = pd.DataFrame(rows)
    assert sorted(frame["species"]) == SPECIES
    for fold, held_out in enumerate(folds):
        assert set(frame.loc[frame["fold"] == fold, "species"]) == set(held_out)
    assert (frame[["tp", "fp", "fn", "tn"]].sum(axis=1) == frame["height"] * frame["width"]).all()


def test_the_command_refuses_a_missing_recipe_with_a_message(tmp_path, capsys):
    split_file = tiny_dataset(tmp_path / "data")
    argv = ["--leave-species-out", str(tmp_path / "none.toml"), "--data", str(tmp_path / "data")]
    with pytest.raises(SystemExit) as exit_:
        evaluate_cli.main([*argv, "--split-file", str(split_file), "--generalisation-file", str(tmp_path / "g.csv")])
    assert exit_.value.code == 2 and "none.toml" in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()


@pytest.mark.parametrize("path", sorted((RECIPES_DIR / "generalisation").glob("*.toml")), ids=lambda p: p.stem)
def test_the_benchmark_recipes_parse(path):
    blend = gen.read_blend_recipe(path)
    if blend is not None:
        # A blend's members are recipes of the same benchmark.
        assert all((path.parent / f"{member}.toml").is_file() for member in blend.members)
        return
    args = train_cli.parse_args(["--config", str(path)])
    assert args.model in {"unet16", "u2netp_seg"} and args.recipe.startswith("leave-species-out")
    # Every fold of a fine-tuning recipe starts from weights that never saw Leeds.
    assert args.init is None or args.init.name == "u2netp"
