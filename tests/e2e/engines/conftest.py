"""Fixtures of the cross-engine scenarios: one engine per parameter (Chromium, Firefox, WebKit),
launched once per session, and a fresh profile per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from drivers import ENGINES, Chromium, Engine, Firefox, Profile, WebKit


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The engine under test. Missing software is a set-up error naming what to install, not a
    skip: `make test` installs every engine."""
    made: Engine
    if request.param == "chromium":
        made = Chromium(request.getfixturevalue("browser"))
    elif request.param == "firefox":
        made = Firefox()
    else:
        made = WebKit()
    yield made
    made.quit()


@pytest.fixture
def profile(engine: Engine) -> Iterator[Profile]:
    """A fresh profile: no storage, no service worker, no cache from another test."""
    made = engine.profile()
    yield made
    made.drop()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        if "/engines/" in str(item.fspath):
            item.add_marker(pytest.mark.engines)
