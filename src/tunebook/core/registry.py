"""Name registries for plug-ins (search designers, procedures): ``@registry("name")``.

A plug-in class registers under the name users write (``search.algorithm: refine``); the
decorator also sets the class's ``name``, so the class and the registry never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T", bound=type)
C = TypeVar("C", bound=type)


class Registry(Generic[T]):
    """Classes of one kind by name, in registration order.

    Args:
        kind: what the names are, for messages ("search algorithm", "procedure").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, Any] = {}

    def __call__(self, name: str) -> Callable[[C], C]:
        """Class decorator: register the class as ``name`` (each name once)."""
        def register(cls: C) -> C:
            taken = self._classes.get(name)
            if taken is not None and taken is not cls:
                raise ValueError(f"a {self.kind} named {name!r} is already registered "
                                 f"({taken.__qualname__})")
            own = cls.__dict__.get("name")  # set by an earlier registration of this very class
            if own is not None and own != name and self._classes.get(own) is cls:
                raise ValueError(f"{cls.__qualname__} is already the {self.kind} {own!r}: one "
                                 f"class, one name (subclass it to register {name!r})")
            cls.name = name  # type: ignore[attr-defined]  # every plug-in base declares it
            self._classes[name] = cls
            return cls

        return register

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._classes)

    def get(self, name: str) -> T:
        """The class registered as ``name``; ValueError naming the known ones if none."""
        cls = self._classes.get(name)
        if cls is None:
            known = ", ".join(self._classes) or "none registered"
            raise ValueError(f"unknown {self.kind} {name!r}; one of {known}")
        found: T = cls
        return found
