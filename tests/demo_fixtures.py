"""The offline demo world for tests, built once per test session and shared by every test module that needs it.

Use the fixture (``from tests.demo_fixtures import demo_world`` in a test module) or call
``build_or_get_session_demo_world(tmp_path_factory)`` from your own session fixture. The default world takes about
a minute to build; set ``DASSLITE_TEST_DEMO_DIR`` to a persistent folder (e.g. a CI cache) to build it once across
test runs (a world is only reused when its completion marker matches the current recipe).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

from dasslite.demo import DemoRecipe, DemoWorld, ensure_demo_world

ENV_TEST_DIR = "DASSLITE_TEST_DEMO_DIR"
_WORLDS: Dict[Tuple[str, DemoRecipe], DemoWorld] = {}


def session_demo_cache(tmp_path_factory) -> Path:
    """Where the session's demo worlds live: ``$DASSLITE_TEST_DEMO_DIR`` or a folder in pytest's session temp."""
    env = os.environ.get(ENV_TEST_DIR)
    return Path(env).expanduser() if env else tmp_path_factory.getbasetemp() / "demo_world_cache"


def build_or_get_session_demo_world(tmp_path_factory, recipe: Optional[DemoRecipe] = None) -> DemoWorld:
    """The demo world of ``recipe`` (default: the real demo) for this test session, built on first request."""
    recipe = recipe or DemoRecipe()
    cache = session_demo_cache(tmp_path_factory)
    key = (str(cache), recipe)
    if key not in _WORLDS:
        _WORLDS[key] = ensure_demo_world(cache, recipe=recipe)
    return _WORLDS[key]


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory) -> DemoWorld:
    """The default demo world (what ``bash scripts/coop/base2new.sh demo 4`` uses), built once per session."""
    return build_or_get_session_demo_world(tmp_path_factory)
