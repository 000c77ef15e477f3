"""The import contract (.importlinter) covers the whole package and catches what it is there for;
background tasks are found by the convention that replaced a list of their names.

`make lint` runs `lint-imports` on the code as it is; these tests keep the contract honest: no
module of the package may sit outside the layers, and an upward import hidden in a function is
caught like any other.
"""

from __future__ import annotations

import configparser
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django_tasks import task

import mimamori
from mimamori import tasking
from mimamori.tasking import durable
from mimamori.tasking.discovery import project_tasks

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contract() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(CONTRACT)
    return config


def _layered_modules() -> set[str]:
    layers = _contract()["importlinter:contract:layers"]["layers"]
    return {name.strip() for line in layers.splitlines() for name in line.replace("|", ":").split(":")} - {""}


def test_every_module_of_the_package_has_its_place_in_the_layers() -> None:
    modules = {f"mimamori.{module.name}" for module in pkgutil.iter_modules(mimamori.__path__)}
    assert modules - _layered_modules() == set()
    assert _layered_modules() - modules == set()


def test_no_contract_ignores_an_import() -> None:
    config = _contract()
    ignored = {name: config[name].get("ignore_imports") for name in config.sections()}
    assert {name: lines for name, lines in ignored.items() if lines} == {}


def _lint(package_parent: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(CONTRACT), "--no-cache"],
        cwd=package_parent,
        env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "mimamori", tmp_path / "mimamori", ignore=shutil.ignore_patterns("__pycache__", "locale")
    )
    assert _lint(tmp_path).returncode == 0, "the copy as it is keeps the contract"

    log = tmp_path / "mimamori" / "audit" / "log.py"
    log.write_text(
        log.read_text()
        + "\n\ndef _which_schools(broadcast):\n"
        + "    from mimamori.broadcasts.targeting import target_schools\n\n"
        + "    return target_schools(broadcast)\n"
    )
    broken = _lint(tmp_path)
    assert broken.returncode != 0
    assert "mimamori.audit.log -> mimamori.broadcasts.targeting" in broken.stdout


def test_both_engines_know_every_task_by_its_apps_tasks_module() -> None:
    assert sorted(project_tasks()) == [
        "mimamori.broadcasts.tasks.deliver_chunk",
        "mimamori.broadcasts.tasks.fan_out_broadcast",
        "mimamori.mail.tasks.send_mail",
        "mimamori.mail.tasks.send_mails",
        "mimamori.quakes.tasks.release_quake_alert",
        "mimamori.registry.tasks.post_reach_test",
        "mimamori.registry.tasks.send_password_reset",
        "mimamori.registry.tasks.send_registration_complete",
        "mimamori.support.tasks.send_inquiry_acknowledgement",
        "mimamori.support.tasks.send_inquiry_answer",
        "mimamori.support.tasks.send_inquiry_copy",
    ]


@task()
def stray_task(registrant_id: int) -> int:
    return registrant_id


@pytest.mark.django_db
def test_a_task_outside_an_apps_tasks_module_is_refused_in_embedded_mode_too() -> None:
    with pytest.raises(ValueError, match="not in an app's tasks module"):
        tasking.enqueue(stray_task, 1)


def test_every_task_is_made_with_tasking_task_so_it_outlives_the_database_going_away() -> None:
    # django-tasks' own @task would leave a task that met the database away failed (tasking/durable.py).
    made_elsewhere = [
        path for path, found in project_tasks().items() if found.func.__code__.co_filename != durable.__file__
    ]
    assert made_elsewhere == []
