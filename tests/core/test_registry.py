"""The plug-in registry: registration sets the name, a name is taken once, unknown names say
which are known, names keep their registration order."""

from __future__ import annotations

from typing import ClassVar

import pytest

from tunebook.core.registry import Registry
from tunebook.procedures.base import procedure, procedure_names
from tunebook.search.designers import designer, designer_names


class Plugin:
    """A plug-in base as designers and procedures have: the registry fills ``name``."""

    name: ClassVar[str]


def test_the_decorator_registers_the_class_and_names_it() -> None:
    reg: Registry[type[Plugin]] = Registry("widget")

    @reg("alpha")
    class Alpha(Plugin):
        pass

    assert Alpha.name == "alpha"
    assert reg.get("alpha") is Alpha
    assert reg.names() == ("alpha",)
    assert reg.kind == "widget"


def test_names_keep_the_registration_order_not_the_alphabet() -> None:
    reg: Registry[type[Plugin]] = Registry("widget")
    for name in ("zeta", "alpha", "mu"):
        reg(name)(type(name.title(), (Plugin,), {}))
    assert reg.names() == ("zeta", "alpha", "mu")
    assert [reg.get(n).name for n in reg.names()] == ["zeta", "alpha", "mu"]


def test_a_taken_name_is_refused_and_the_first_class_keeps_it() -> None:
    reg: Registry[type[Plugin]] = Registry("widget")

    @reg("alpha")
    class First(Plugin):
        pass

    class Second(Plugin):
        pass

    with pytest.raises(ValueError,
                       match=r"^a widget named 'alpha' is already registered \(.*First\)$"):
        reg("alpha")(Second)
    assert reg.get("alpha") is First
    assert reg.names() == ("alpha",)
    # The refused class was not renamed on the way.
    assert "name" not in vars(Second)


def test_registering_the_same_class_again_is_harmless() -> None:
    # A module imported twice (e.g. as a script and as a module) decorates its class again.
    reg: Registry[type[Plugin]] = Registry("widget")

    class Alpha(Plugin):
        pass

    assert reg("alpha")(Alpha) is Alpha
    assert reg("alpha")(Alpha) is Alpha
    assert reg.names() == ("alpha",)


def test_a_subclass_registers_under_its_own_name() -> None:
    reg: Registry[type[Plugin]] = Registry("widget")

    @reg("base")
    class Base(Plugin):
        pass

    @reg("derived")
    class Derived(Base):
        pass

    assert (Base.name, Derived.name) == ("base", "derived")
    assert reg.get("base") is Base and reg.get("derived") is Derived


def test_an_unknown_name_lists_the_known_ones_in_order() -> None:
    reg: Registry[type[Plugin]] = Registry("search algorithm")
    with pytest.raises(ValueError, match=r"^unknown search algorithm 'x'; one of none registered$"):
        reg.get("x")
    reg("b")(type("B", (Plugin,), {}))
    reg("a")(type("A", (Plugin,), {}))
    with pytest.raises(ValueError, match=r"^unknown search algorithm 'bayes'; one of b, a$"):
        reg.get("bayes")
    # Names are exact: no case folding, no trimming.
    for near in ("B", " b", "b "):
        with pytest.raises(ValueError, match="unknown search algorithm"):
            reg.get(near)


def test_registries_are_independent() -> None:
    one: Registry[type[Plugin]] = Registry("one")
    two: Registry[type[Plugin]] = Registry("two")
    one("shared")(type("InOne", (Plugin,), {}))
    two("shared")(type("InTwo", (Plugin,), {}))  # the same name in another registry is free
    assert one.get("shared").__name__ == "InOne" and two.get("shared").__name__ == "InTwo"
    with pytest.raises(ValueError, match="unknown two 'only'"):
        one("only")(type("Only", (Plugin,), {}))
        two.get("only")


def test_the_project_registries_are_registry_instances() -> None:
    # The designers and procedures go through this class: what is tested here holds for them.
    assert isinstance(designer, Registry) and designer.kind == "search algorithm"
    assert isinstance(procedure, Registry) and procedure.kind == "procedure"
    assert designer_names() == designer.names()
    assert procedure_names() == procedure.names()
    assert all(designer.get(n).name == n for n in designer.names())
    assert all(procedure.get(n).name == n for n in procedure.names())


def test_one_class_cannot_take_a_second_name() -> None:
    reg: Registry[type] = Registry("widget")

    @reg("first")
    class Widget:
        name = ""

    with pytest.raises(ValueError, match="already the widget 'first'"):
        reg("second")(Widget)
    assert Widget.name == "first" and reg.names() == ("first",)

    @reg("second")
    class Special(Widget):  # a subclass may take its own name
        pass

    assert (Widget.name, Special.name) == ("first", "second")
    assert reg.get("second") is Special
