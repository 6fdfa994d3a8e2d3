"""From photo to probabilities: the predictor registry, the Keras and OpenVINO engines,
export, INT8 versions, the second look and the classical baselines.

Nothing here imports evaluation or benchmarks; the precision check file is read
here (``checks``) and written by :mod:`seg_core.evaluation.precision`.
"""
