"""The generic Registry behind every extension point."""

import pytest

from taskderain.registry import Registry


def test_lazy_builtins_load_once_and_errors_list_names():
    calls = []
    reg: Registry = Registry("widget", lambda: calls.append(1) or reg.add("builtin", "B"))
    assert calls == []  # nothing imported before first use
    assert reg.get("builtin") == "B" and reg.names() == ["builtin"] and calls == [1]
    reg.add("mine", "M")
    assert "mine" in reg and list(reg) == ["builtin", "mine"] and calls == [1]
    assert reg.add("mine", "M") == "M"  # the same object again is fine
    with pytest.raises(ValueError, match="widget 'mine' is registered twice"):
        reg.add("mine", "other")
    with pytest.raises(KeyError, match="unknown widget 'nope'; available: builtin, mine"):
        reg.get("nope")
    assert reg.remove("mine") == "M" and "mine" not in reg


def test_per_name_modules_import_only_when_asked():
    reg: Registry = Registry("codec", {"json": "json"})
    assert reg.names() == ["json"]  # listed before import
    with pytest.raises(KeyError, match="unknown codec 'json'"):  # the module does not register it
        reg.get("json")


def test_every_extension_point_is_one_registry():
    from taskderain.losses.terms import _REGISTRY as terms
    from taskderain.models.registry import _REGISTRY as derainers
    from taskderain.rain.zoo.registry import _REGISTRY as rains
    from taskderain.stages.head import _REGISTRY as heads
    from taskderain.train.training_task import _REGISTRY as tasks

    for registry, name in [(derainers, "mspfn_lite"), (rains, "garg_nayar"), (heads, "yolo"),
                           (terms, "detector_features"), (tasks, "joint")]:
        assert isinstance(registry, Registry) and registry.get(name) is not None
