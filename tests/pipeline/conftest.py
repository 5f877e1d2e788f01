"""Fixtures of the pipeline tests (helpers live in :mod:`.helpers`)."""

from __future__ import annotations

import pytest

from .helpers import FakeContext, tiny_script


@pytest.fixture
def fake_context():
    return FakeContext()


@pytest.fixture
def script():
    return tiny_script()



_QUIET = pytest.mark.filterwarnings(r"ignore:Dictionary.create\(\) is deprecated:DeprecationWarning")


def pytest_collection_modifyitems(config, items):
    # pyopenjtalk-plus calls a deprecated sudachipy API on each thread's first use; the
    # pipeline silences it at import, but pytest resets warning filters for every test.
    for item in items:
        if "tests/pipeline/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(_QUIET)
