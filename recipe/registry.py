"""Named registries (veRL style): a plain dict, a decorator that fills it, a lookup that fails
with the known names. Algorithms and stage rewards both use these."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F")


def register_in(registry: dict, kind: str, name: str) -> Callable[[F], F]:
    """Decorator that adds its target to `registry` under `name`; a second `name` is an error."""

    def decorator(target: F) -> F:
        if name in registry:
            raise ValueError(f"{kind} {name!r} is already registered")
        registry[name] = target
        return target

    return decorator


def lookup(registry: dict, kind: str, name: str, error: type[Exception] = ValueError):
    """`registry[name]`, or `error` naming every registered entry."""
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise error(f"unknown {kind} {name!r}; known: {known}") from None
