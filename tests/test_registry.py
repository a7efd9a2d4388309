"""The one registry behind every name mgbench looks up (architectures, prefix loaders, training
methods, corruptions, condition types, summaries): duplicates refused, unknown names a one-line
InputError naming what to use, plugins imported on first lookup."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

from mgbench.errors import InputError
from mgbench.registry import Registry


def test_register_get_and_names() -> None:
    registry: Registry[int] = Registry("number")
    assert registry.register("two")(2) == 2  # a decorator returns what it decorates
    registry.add("one", 1)
    assert registry.get("one") == 1 and "two" in registry and "three" not in registry
    assert registry.names() == ["one", "two"] and registry.items() == [("one", 1), ("two", 2)]
    with pytest.raises(RuntimeError, match="number 'one' registered twice"):
        registry.add("one", 3)
    assert registry.get("one") == 1
    registry.unregister("two")
    assert registry.names() == ["one"]


@pytest.mark.parametrize("name", ["three", None, 3, ["one"]])
def test_an_unknown_name_is_one_line_naming_the_known_ones(name: object) -> None:
    registry: Registry[int] = Registry("number")
    registry.add("two", 2)
    registry.add("one", 1)
    with pytest.raises(InputError) as error:
        registry.get(name)
    assert str(error.value) == f"unknown number {name!r}: use one of one, two"
    assert name not in registry


def test_a_registry_may_say_another_fix() -> None:
    registry: Registry[int] = Registry("model", fix="run `mgbench models`")
    with pytest.raises(InputError, match=r"^unknown model 'x': run `mgbench models`$"):
        registry.get("x")


@pytest.mark.parametrize("lookup", [
    lambda registry: registry.get("seven") == 7,
    lambda registry: "seven" in registry,
    lambda registry: registry.names() == ["seven"],  # names() imports every plugin
], ids=["get", "in", "names"])
def test_a_plugin_is_imported_on_its_first_lookup(lookup: Callable[[Registry[int]], bool], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry imports the plugin's module, which registers its entry (into the registry
    this test keeps as ``PLUGIN_REGISTRY``)."""
    registry: Registry[int] = Registry("number", plugins={"seven": "mgbench_test_plugin"})
    monkeypatch.setattr(sys.modules[__name__], "PLUGIN_REGISTRY", registry, raising=False)
    (tmp_path / "mgbench_test_plugin.py").write_text(
        f"import sys\nsys.modules[{__name__!r}].PLUGIN_REGISTRY.add('seven', 7)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mgbench_test_plugin", raising=False)
    assert lookup(registry)
    assert sys.modules.pop("mgbench_test_plugin")
