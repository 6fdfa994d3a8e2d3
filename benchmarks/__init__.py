"""Benchmarks of the whole product that are not part of the library: the browser soak
(``python -m benchmarks.soak``) and the memory check (``python -m benchmarks.memcheck``).
"""
