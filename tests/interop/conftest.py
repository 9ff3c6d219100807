"""Fixtures for tests against real peers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.postfix import PostfixFactory, PostfixInstance


@pytest.fixture
def postfix_factory() -> Iterator[PostfixFactory]:
    """Make private Postfix instances (keyword arguments of PostfixInstance);
    all are stopped and removed at the end of the test."""
    made: list[PostfixInstance] = []

    def make(*, hostname: str = "postfix.test", users: tuple[str, ...] = ("alice",),
             main_cf: str = "", smtpd_options: dict[str, str] | None = None
             ) -> PostfixInstance:
        instance = PostfixInstance(hostname=hostname, users=users, main_cf=main_cf,
                                   smtpd_options=smtpd_options)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.stop()
