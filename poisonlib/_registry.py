"""A name -> builder registry (torchvision style), shared by datasets and models."""

from __future__ import annotations

from collections.abc import Callable

from ._validation import check_choice


class Registry:
    """Builders registered by name with :meth:`register`; :meth:`get` validates the name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, Callable] = {}

    def register(self, name: str):
        """Decorator adding ``fn`` under ``name`` (a duplicate name is an error)."""

        def deco(fn):
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._builders[name] = fn
            return fn

        return deco

    def names(self) -> list[str]:
        return sorted(self._builders)

    def get(self, name: str) -> Callable:
        return self._builders[check_choice(self.kind, name, self._builders)]

    def __contains__(self, name) -> bool:
        return name in self._builders
