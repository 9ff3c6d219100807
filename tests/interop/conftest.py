"""Fixtures for tests against real peers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.postfix import PostfixInstance


@pytest.fixture
def postfix_factory() -> Iterator:
    """Make private Postfix instances (keyword arguments of PostfixInstance);
    all are stopped and removed at the end of the test."""
    made: list[PostfixInstance] = []

    def make(**kwargs: object) -> PostfixInstance:
        instance = PostfixInstance(**kwargs)  # type: ignore[arg-type]
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.stop()
