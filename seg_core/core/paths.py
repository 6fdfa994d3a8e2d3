"""Where a clone keeps what the library reads: trained models, recipes and sample photos.

The models are read from the clone (``pip install -e .``), not from a wheel,
so every path is relative to the repository root.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "models"
RECIPES_DIR = REPO_ROOT / "recipes"
SAMPLES_DIR = REPO_ROOT / "samples"
