"""The examples in these docs run as doctests, each file in a rolled-back transaction."""

import pytest


@pytest.fixture(autouse=True)
def _examples_use_the_test_database(db):
    """Give every doctest in docs/ the test database, as a test function would get it."""
