"""How `make test` shares the suite among pytest-xdist processes (`-n auto --dist loadfile`).

A file's tests stay together in one process, in order, so a module-scoped fixture (the demo
system of tests/browser.py, the Postfix relay) is made once, as in a run without xdist. One
more rule keeps what a serial run promises: pytest-django orders the collection as plain
database tests, then transactional ones (which empty the database when they end, and with it
what migrations wrote, such as the carrier profiles), then tests without the database. Each
process must see that order too, so a file whose tests fall into two of those parts is two
units of work, and the units are handed out in collection order (not largest first): no
process runs a plain database test after a transactional one. Each process has its own test
database (pytest-django), so what one process empties never touches another's.
"""

from __future__ import annotations

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling


class LoadFileInDatabaseOrder(LoadScopeScheduling):
    """--dist loadfile, by runs of a file in the collection, handed out in collection order."""

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # collection order, not the largest unit first
        self.units: dict[str, str] = {}

    def _split_scope(self, nodeid: str) -> str:
        if not self.units:
            self._number_runs()
        return self.units[nodeid]

    def _number_runs(self) -> None:
        """Each run of one file's tests in the collection is a unit: ``path#n``."""
        assert self.collection is not None
        runs: dict[str, int] = {}
        previous = None
        for nodeid in self.collection:
            path = nodeid.split("::", 1)[0]
            if path != previous:
                runs[path] = runs.get(path, 0) + 1
                previous = path
            self.units[nodeid] = f"{path}#{runs[path]}"
