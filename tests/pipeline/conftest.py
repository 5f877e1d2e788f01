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


@pytest.fixture(autouse=True)
def _quiet_pyopenjtalk():
    # pyopenjtalk-plus uses a deprecated sudachipy call on each thread's first use;
    # the pipeline silences it at import, but pytest resets warning filters per test.
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pyopenjtalk(\..*)?$")
    yield
