"""Every test session uses its own build cache folder, so no test reads or fills ``~/.cache/dsim``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_build_cache() -> Iterator[None]:
    old = os.environ.get("DSIM_CACHE")
    with tempfile.TemporaryDirectory(prefix="dsim-test-cache-") as tmp:
        os.environ["DSIM_CACHE"] = tmp
        yield
    if old is None:
        os.environ.pop("DSIM_CACHE", None)
    else:
        os.environ["DSIM_CACHE"] = old
