"""python -m seg_core.data: scan the dataset and (with --write-split) rebuild the committed split."""

from __future__ import annotations

from pathlib import Path

from seg_core.data.leeds import (
    DATA_ENV,
    DEFAULT_DATA,
    SPECIES_FILE,
    SPLIT_FILE,
    make_split,
    resolve_data_dir,
    scan_dataset,
    write_species,
    write_split,
)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m seg_core.data",
        description="Scan a Leeds-layout folder and (re)write the fixed train/val/test split.",
    )
    parser.add_argument("--data", help=f"dataset folder (default: ${DATA_ENV} or {DEFAULT_DATA})")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=SPLIT_FILE, help="split file to write")
    parser.add_argument("--write-split", action="store_true", help="write the split file")
    args = parser.parse_args(argv)
    scan = scan_dataset(resolve_data_dir(args.data))
    print(f"{len(scan.samples)} pairs, {len(scan.missing_masks)} images without mask")
    fractions = (0.70, 0.15, 0.15)
    split = make_split([s.id for s in scan.samples], args.seed, fractions)
    print({name: len(ids) for name, ids in split.items()})
    if args.write_split:
        write_split(split, args.out, args.seed, fractions)
        write_species(scan.root)
        print(f"wrote {args.out} and {SPECIES_FILE}")


if __name__ == "__main__":
    main()
