"""The bottom layer: paths, the model config, image decoding, metrics and their labels.

Everything else imports from here; nothing here imports from another subpackage.
"""

#: The library's version (the HTTP API reports it; pyproject.toml carries the same).
VERSION = "0.1.0"
