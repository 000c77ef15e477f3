"""Where the project's background tasks are: in the ``tasks`` module of each mimamori app."""

from __future__ import annotations

import functools
import importlib
from typing import Any

from django.apps import apps
from django.utils.module_loading import module_has_submodule
from django_tasks.base import Task


@functools.cache
def project_tasks() -> dict[str, Task[Any, Any]]:
    """Every background task of the project, by module path: the django-tasks Tasks defined in
    the ``tasks`` module of each mimamori app (found as Django's admin finds ``admin`` modules).

    A task defined anywhere else would be refused by the distributed workers, so tasking.enqueue
    refuses it in both modes.
    """
    found: dict[str, Task[Any, Any]] = {}
    for config in apps.get_app_configs():
        if not config.name.startswith("mimamori.") or not module_has_submodule(config.module, "tasks"):
            continue
        module = importlib.import_module(f"{config.name}.tasks")
        for value in vars(module).values():
            if isinstance(value, Task) and value.module_path.startswith(f"{module.__name__}."):
                found[value.module_path] = value
    return found
