"""Test settings as a project made by `startproject` has them: no LOGGING setting at all."""

from tests.settings import *  # noqa: F403

LOGGING: dict = {}
