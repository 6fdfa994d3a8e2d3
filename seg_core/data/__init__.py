"""Data: the Leeds dataset and its fixed split, photo transforms and training augmentation.

``python -m seg_core.data --write-split`` rebuilds the committed split.
"""
