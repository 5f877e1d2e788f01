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
