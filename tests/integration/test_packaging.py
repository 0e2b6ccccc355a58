"""The wheel, installed into a fresh virtual environment, runs a job in a project that is not ours.

Everything runs as a subprocess with the new environment's Python, from a directory outside the
repository and with no PYTHONPATH, so what is tested is what `pip install` gives a user: the
metadata's dependencies, the package data (migrations, templates) and the management commands.
Nothing here needs PostgreSQL: the `postgresql` extra is the user's choice, so the throwaway
project runs on SQLite with only the required dependencies installed.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import REPO

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        connection.vendor != "sqlite",
        reason="builds and installs the wheel once per run; its own project runs on SQLite",
    ),
]

# What the build reads: pyproject.toml names the readme and the licence, and packages `jobs`.
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE")
PIP_QUIET = ("--disable-pip-version-check", "--no-input", "-q")

MODELS = """\
from django.db import models

from jobs.models import Job


class Greeting(models.Model):
    text = models.CharField(max_length=100)


class SendGreeting(Job):
    name = models.CharField(max_length=50)

    def perform(self):
        Greeting.objects.create(text=f"hello {self.name}")
"""

SETTINGS = """
INSTALLED_APPS = ["jobs", *INSTALLED_APPS, "greetings"]
DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE"}
"""

URLS = """
from django.urls import include

urlpatterns.append(path("jobs/", include("jobs.urls")))
"""

ENQUEUE = """
from greetings.models import SendGreeting

print(SendGreeting.objects.create(name="world").enqueue().pk)
"""

OUTCOME = """
import json

from greetings.models import Greeting, SendGreeting

job = SendGreeting.objects.get()
texts = list(Greeting.objects.values_list("text", flat=True))
print(json.dumps({"state": job.state, "error": job.error_message, "greetings": texts}))
"""


def run(*command: str | Path, cwd: Path, timeout: float = 120) -> str:
    """Run `command` in a clean environment; its stdout, or a failure showing what it said."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "VIRTUAL_ENV"}
    }
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout


def build_wheel(workdir: Path, python: Path) -> Path:
    """Build from a copy of the sources, so the build leaves nothing behind in the repository."""
    source = workdir / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "jobs", source / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    dist = workdir / "dist"
    run(python, "-m", "pip", "wheel", *PIP_QUIET, "--no-deps", "-w", dist, source, cwd=workdir)
    (wheel,) = dist.glob("*.whl")
    return wheel


def package_files(root: Path) -> set[str]:
    """Every file of the `jobs` package under `root`, relative to it, bytecode left out."""
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment with the wheel installed, and a new project that uses it."""

    venv: Path
    wheel: Path
    site: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def manage(self, *args: str) -> str:
        return run(self.python, "manage.py", *args, cwd=self.site)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    workdir = tmp_path_factory.mktemp("packaging")
    venv = workdir / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=workdir)
    python = venv / "bin" / "python"
    wheel = build_wheel(workdir, python)
    run(python, "-m", "pip", "install", *PIP_QUIET, wheel, cwd=workdir, timeout=300)

    site = workdir / "site"
    site.mkdir()
    run(venv / "bin" / "django-admin", "startproject", "mysite", site, cwd=workdir)
    app = site / "greetings"
    app.mkdir()
    (app / "__init__.py").touch()
    (app / "models.py").write_text(MODELS)
    with (site / "mysite" / "settings.py").open("a") as settings:
        settings.write(SETTINGS)
    with (site / "mysite" / "urls.py").open("a") as urls:
        urls.write(URLS)
    return Installed(venv, wheel, site)


def test_the_wheel_carries_the_app_with_its_migrations_and_templates(installed):
    assert installed.wheel.name == "django_model_jobs-0.1.0-py3-none-any.whl"
    where = run(installed.python, "-c", "import jobs; print(jobs.__path__[0])", cwd=installed.site)
    package = Path(where.strip())
    assert package.is_relative_to(installed.venv), f"jobs imported from {package}, not the venv"
    assert (package / "templates" / "admin" / "jobs" / "dashboard.html").is_file()
    assert (package / "migrations" / "0001_initial.py").is_file()
    assert package_files(package) == package_files(REPO / "jobs")
    with zipfile.ZipFile(installed.wheel) as wheel:
        top_level = {name.split("/")[0] for name in wheel.namelist()}
    assert top_level == {"jobs", "django_model_jobs-0.1.0.dist-info"}


def test_a_new_project_without_psycopg_runs_a_job_from_the_installed_wheel(installed):
    installed.manage("check", "--fail-level", "WARNING")
    installed.manage("makemigrations", "greetings")
    installed.manage("migrate")
    installed.manage("shell", "-c", ENQUEUE)
    installed.manage("runjobs", "--burst")
    outcome = installed.manage("shell", "-c", OUTCOME).splitlines()[-1]  # after shell's banner
    assert outcome == '{"state": "succeeded", "error": "", "greetings": ["hello world"]}'
