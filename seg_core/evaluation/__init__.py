"""How good and how fast: evaluation, robustness, the benchmark, runtime agreement,
result files and model cards.
"""
