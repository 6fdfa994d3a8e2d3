"""The architecture registry, in the style of timm's ``create_model``.

An architecture is a name for a config (``@register_model`` on a function that
returns one, keyword arguments overriding its fields); a family is a builder from
its config type to a ``keras.Model`` (``@register_builder``). Families register
themselves on import; ``seg_core/models/__init__.py`` imports each of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from seg_core.core.config import NetworkConfig

if TYPE_CHECKING:
    import keras

_CONFIGS: dict[str, Callable[..., NetworkConfig]] = {}
_BUILDERS: dict[type, Callable[[NetworkConfig, str], keras.Model]] = {}


class UnknownModelError(KeyError):
    """Raised when a model name is not in the registry."""


def register_model(fn: Callable[..., NetworkConfig]) -> Callable[..., NetworkConfig]:
    """Register an architecture under the function's name.

    Args:
        fn: returns the default config of the architecture; keyword arguments
            override fields.

    Returns:
        ``fn`` unchanged, so it can be used as a decorator.
    """
    _CONFIGS[fn.__name__] = fn
    return fn


def register_builder(config_type: type) -> Callable:
    """Register the function that builds every architecture whose config is a ``config_type`` (decorator)."""

    def decorator(build: Callable[[NetworkConfig, str], keras.Model]) -> Callable[[NetworkConfig, str], keras.Model]:
        _BUILDERS[config_type] = build
        return build

    return decorator


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_CONFIGS)


def model_config(name: str, **overrides) -> NetworkConfig:
    """The architecture config registered as ``name``, with field overrides.

    Raises:
        UnknownModelError: ``name`` is not registered.
    """
    if name not in _CONFIGS:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _CONFIGS[name](**overrides)


def build_model(config: NetworkConfig, name: str) -> keras.Model:
    """The network of ``config``'s family with random weights, named ``name``."""
    return _BUILDERS[type(config)](config, name)


def create_model(name: str, **overrides) -> keras.Model:
    """Build the registered architecture ``name`` with random weights.

    Args:
        name: a name from ``list_models()``.
        **overrides: config fields to change (e.g. ``input_size=64``).

    Returns:
        An uncompiled ``keras.Model`` mapping (N, S, S, 3) in [0, 1] to
        (N, S, S, 1) foreground probabilities.

    Raises:
        UnknownModelError: ``name`` is not registered.
    """
    return build_model(model_config(name, **overrides), name)
