"""`python -m tests` itself: what it does about the browser tests before any pass runs.

Each test runs the command in a subprocess on a tiny selection (the two browser tests, which
it skips, or only collects), with `TESTS_CHROMIUM` naming a Chromium that is not there, so a
machine without a browser is played without touching the real one. The command's behaviour
does not depend on the database under test, so these run in the SQLite pass only.
"""

import os
import re
import subprocess
import sys

import pytest
from django.db import connection

from tests.browser import SKIP_BROWSER_TESTS
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="the command does not depend on the database: once"
)

SKIP_LINE = (
    "browser tests skipped: no Chromium at {chromium} (apt-get install chromium, then rerun; "
    "or python -m tests --browser install to install it now)"
)


def run_tests_command(*args: str, chromium, path=None) -> subprocess.CompletedProcess:
    """`python -m tests --db sqlite ARGS` as a newcomer runs it, with no browser at `chromium`."""
    env = {**os.environ, "TESTS_CHROMIUM": str(chromium)}
    env.pop(SKIP_BROWSER_TESTS, None)  # set when this suite itself runs without a browser
    env.pop("DEBIAN_FRONTEND", None)  # the command must set it for apt-get
    if path is not None:
        env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [sys.executable, "-m", "tests", "--db", "sqlite", *args, "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_chromium_the_browser_tests_are_skipped_with_one_line_at_the_start_and_end(
    tmp_path,
):
    chromium = tmp_path / "no-chromium"

    result = run_tests_command("-m", "e2e", "tests/e2e", chromium=chromium)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    skip_line = f"== {SKIP_LINE.format(chromium=chromium)}"
    assert lines[0] == skip_line
    assert lines[-1] == f"   {SKIP_LINE.format(chromium=chromium)}"
    assert re.search(r"= \d+ skipped in ", result.stdout)  # nothing passed, failed or errored


def test_without_chromium_only_the_browser_tests_are_skipped(tmp_path):
    checks = "tests/test_checks.py::test_installed_job_models_pass_the_checks"

    result = run_tests_command("-q", "tests/e2e", checks, chromium=tmp_path / "no-chromium")

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^1 passed, \d+ skipped in ", result.stdout, re.MULTILINE)


def test_browser_require_fails_before_any_pass_when_chromium_is_missing(tmp_path):
    chromium = tmp_path / "no-chromium"

    result = run_tests_command("--browser", "require", "tests/e2e", chromium=chromium)

    assert result.returncode == 1
    assert "== tests on" not in result.stdout
    assert result.stderr == (
        f"tests: --browser require: no Chromium at {chromium}: install it with "
        "`apt-get install chromium` (or rerun with --browser install)\n"
    )


def test_browser_install_installs_chromium_with_apt_get_then_runs_the_browser_tests(tmp_path):
    """apt-get (and sudo, for a run as an ordinary user) are stand-ins that log their
    arguments, and "install" the stand-in Chromium where TESTS_CHROMIUM looks."""
    chromium, log, bin_dir = tmp_path / "chromium", tmp_path / "apt-get.log", tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "apt-get").write_text(
        f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {log}\n'
        f'[ "$1" = install ] && touch {chromium}\nexit 0\n'
    )
    for program in bin_dir.iterdir():
        program.chmod(0o755)

    result = run_tests_command(
        "--browser", "install", "--co", "-q", "tests/e2e", chromium=chromium, path=bin_dir
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert log.read_text().splitlines() == [
        "noninteractive update -qq",
        "noninteractive install -y -qq chromium",
    ]
    assert result.stdout.startswith(
        f"== no Chromium at {chromium}: installing it (a minute or two)\n"
    )
    assert "browser tests skipped" not in result.stdout
    assert re.search(r"^\d+ tests? collected in ", result.stdout, re.MULTILINE)


def test_browser_install_says_what_failed_when_apt_get_fails(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt_get = bin_dir / "apt-get"
    apt_get.write_text('#!/bin/sh\necho "E: Unable to locate package chromium" >&2\nexit 100\n')
    apt_get.chmod(0o755)
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "sudo").chmod(0o755)

    result = run_tests_command(
        "--browser", "install", "tests/e2e", chromium=tmp_path / "chromium", path=bin_dir
    )

    assert result.returncode == 1
    assert "== tests on" not in result.stdout
    assert result.stderr.startswith("tests: --browser install: `")
    assert "apt-get update -qq` failed (exit 100)\nE: Unable to locate package chromium" in (
        result.stderr
    )
