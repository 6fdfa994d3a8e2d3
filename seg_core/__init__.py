"""Wingmask segmentation core: data, models, training, evaluation and inference.

Nothing in this package imports Streamlit; the dashboard in ``pages/`` is a thin
UI over these functions.
"""

__version__ = "0.1.0"
