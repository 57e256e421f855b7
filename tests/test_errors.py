"""The error trees: every exception class of the mesh is a MeshError drawn in its package's tree."""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from types import ModuleType

import pytest

from mesh_common.errors import MeshError

ERROR_MODULES = {
    "mesh_common": "mesh_common.errors",
    "agent": "agent._errors",
    "aggregator": "aggregator._errors",
    "gateway": "gateway._errors",
    "demo_fleet": "demo_fleet.errors",
    "metricsmesh_cli": "mesh_common.errors",  # the command raises the shared ones only
}
"""Where each package's errors are defined and drawn."""


def every_module() -> list[ModuleType]:
    """Every module of the mesh's packages, imported (entry scripts `__main__` aside)."""
    modules = []
    for package_name in ERROR_MODULES:
        package = importlib.import_module(package_name)
        modules.append(package)
        for info in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if not info.name.endswith("__main__"):
                modules.append(importlib.import_module(info.name))
    return modules


def error_classes() -> list[type[BaseException]]:
    """Every exception class a module of the mesh defines (not those it imports)."""
    found = {
        value
        for module in every_module()
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    }
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


ERRORS = error_classes()


def test_the_walk_finds_the_errors_of_every_package() -> None:
    packages = {cls.__module__.split(".")[0] for cls in ERRORS}
    assert packages == {"mesh_common", "agent", "aggregator", "gateway", "demo_fleet"}


@pytest.mark.parametrize("error", ERRORS, ids=lambda cls: cls.__qualname__)
def test_every_error_is_a_mesh_error_defined_and_drawn_in_its_packages_tree(
    error: type[BaseException],
) -> None:
    assert issubclass(error, MeshError)
    home = ERROR_MODULES[error.__module__.split(".")[0]]
    assert error.__module__ == home
    tree = sys.modules[home].__doc__ or ""
    assert re.search(rf"(^|[├└]── ){error.__name__}\b", tree, re.MULTILINE), tree
