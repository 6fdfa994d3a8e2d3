"""``python -m seg_core.adapt``: teach a trained model new species from a collection of photos and masks.

The command is in ``__main__.py``; the library side is :mod:`seg_core.models.adapt` (the fine-tune) and
:mod:`seg_core.service.teach` (its time budget, INT8 version, precision check and comparison).
"""
