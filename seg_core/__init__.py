"""Wingmask segmentation core: butterfly masks for real photos.

The package face is four names; everything else lives in subpackages by subject,
each layer importing only the ones below it::

    from seg_core import DEFAULT_MODEL, available_predictors, load_predictor, segment

    predictor = load_predictor(DEFAULT_MODEL)
    photo, mask = segment("photo.jpg", predictor)

Layers, bottom up: ``core`` (paths, config, images, metrics), ``data``, ``models``,
``runtime``, ``outputs``, ``evaluation``, ``service``. The modules directly in
this folder are the commands (``python -m seg_core.<command>``), each a thin
argparse entry into the library. Nothing in this package imports Streamlit; the
dashboard in ``pages/`` is a thin UI over these functions.
"""

from seg_core.core import VERSION as __version__
from seg_core.runtime.base import DEFAULT_MODEL
from seg_core.runtime.registry import available_predictors, load_predictor, segment

__all__ = ["DEFAULT_MODEL", "__version__", "available_predictors", "load_predictor", "segment"]
