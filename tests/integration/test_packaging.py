"""The README's install, done word for word, runs a job in a project that is not ours.

The install commands are read from the README's "Install into an existing project" section
and run as written, against a copy of the sources in a folder named as the README names the
clone; so when the README's words change, this test follows them, and when they stop working,
it fails. Everything runs as a subprocess with the new environment's Python, from a directory
outside the repository and with no PYTHONPATH, so what is tested is what a user gets: the
metadata's dependencies, the package data (migrations, templates) and the management commands.
The project is what `startproject` makes plus only what the README says to add: no LOGGING
setting, no JOBS_* setting. Nothing here needs PostgreSQL: the `postgresql` extra is the user's
choice, so the throwaway project runs on SQLite with only the required dependencies installed.
"""

import json
import os
import re
import shlex
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
# The folder the README's install commands name as the clone.
CLONE = "django-model-jobs"

MODELS = """\
import logging
from datetime import timedelta

from django.db import models

from jobs.models import IterativeJob, Job

logger = logging.getLogger(__name__)


class Greeting(models.Model):
    text = models.CharField(max_length=100)


class SendGreeting(Job):
    name = models.CharField(max_length=50)
    max_attempts = 1

    def perform(self):
        logger.info("greeting %s", self.name)
        if self.name == "nobody":
            raise LookupError("nobody to greet")
        Greeting.objects.create(text=f"hello {self.name}")


class SyncAccount(Job):
    account = models.CharField(max_length=20)

    concurrency_key = "account"
    concurrency_limit = 1
    rate_limit = (100, timedelta(seconds=1))

    def perform(self):
        logger.info("synced %s in slot %s", self.account, self.concurrency_slot)


class CountGreetings(IterativeJob):
    cursor = models.BigIntegerField(null=True)

    def items(self, cursor):
        rows = Greeting.objects.order_by("pk")
        if cursor is not None:
            rows = rows.filter(pk__gt=cursor)
        return ((greeting.pk, greeting) for greeting in rows.iterator())

    def each(self, greeting):
        logger.info("counted %s", greeting.text)
"""

ADMIN = """\
from django.contrib import admin

from jobs.admin import JobAdmin

from greetings.models import SendGreeting

admin.site.register(SendGreeting, JobAdmin)
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
from greetings.models import CountGreetings, SendGreeting, SyncAccount

for name in ("world", "nobody"):
    SendGreeting.objects.create(name=name).enqueue()
for account in ("acme", "acme", "acme", "globex"):
    SyncAccount.objects.create(account=account).enqueue()
"""

# Run after the first worker, so there is a greeting to count.
ITERATE = """
from greetings.models import CountGreetings

CountGreetings.objects.create().enqueue()
"""

FLOW_OUTCOME = """
import json

from greetings.models import CountGreetings, SyncAccount

print(json.dumps({
    "syncs": sorted(SyncAccount.objects.values_list("state", "attempts")),
    "counts": list(CountGreetings.objects.values_list("state", "items_done", "attempts")),
}))
"""

OUTCOME = """
import json

from greetings.models import Greeting, SendGreeting

jobs = SendGreeting.objects.order_by("pk")
texts = list(Greeting.objects.values_list("text", flat=True))
print(json.dumps({"states": [job.state for job in jobs], "greetings": texts}))
"""

# The job's page in the admin, as a signed-in superuser sees it.
ADMIN_PAGE = """
from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()  # lets the test client's host in
client = Client()
client.force_login(User.objects.create_superuser("admin", password="unused-password"))
print(client.get("/admin/greetings/sendgreeting/1/change/").content.decode())
"""


def readme_commands(verb: str) -> list[list[str]]:
    """The README's `pip VERB ./CLONE...` commands of its install section, as argument lists."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Install into an existing project", 1)[1].split("\n## ", 1)[0]
    lines = re.findall(rf"^pip {verb} .*$", section, flags=re.MULTILINE)
    lines += re.findall(rf"`(pip {verb} [^`]*)`", section)
    commands = [shlex.split(line.split("#", 1)[0]) for line in lines]
    return [command for command in commands if any(CLONE in part for part in command)]


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


def clone(workdir: Path) -> Path:
    """What a user's clone holds of what the build reads, in the folder the README names."""
    source = workdir / CLONE
    source.mkdir()
    for name in BUILD_INPUTS:
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "jobs", source / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    return source


def pip(python: Path, command: list[str], workdir: Path) -> str:
    """Run a README `pip ...` command with the environment's own pip, quietly."""
    assert command[0] == "pip", command
    return run(python, "-m", "pip", *command[1:], *PIP_QUIET, cwd=workdir, timeout=300)


def package_files(root: Path) -> set[str]:
    """Every file of the `jobs` package under `root`, relative to it, bytecode left out."""
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment with the app installed as the README says, a wheel built as
    it says, and a new project that uses them."""

    venv: Path
    workdir: Path
    site: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def manage(self, *args: str) -> str:
        return run(self.python, "manage.py", *args, cwd=self.site)

    def manage_result(self, *args: str) -> subprocess.CompletedProcess:
        """`manage.py ARGS` with stdout and stderr kept apart, for what the console shows."""
        env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.pop("DATABASE_URL", None)
        return subprocess.run(
            [str(self.python), "manage.py", *args],
            cwd=self.site,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    workdir = tmp_path_factory.mktemp("packaging")
    venv = workdir / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=workdir)
    python = venv / "bin" / "python"
    clone(workdir)
    install = readme_commands("install")
    assert install, "the README's install section names no `pip install ./django-model-jobs`"
    pip(python, install[0], workdir)  # the first: the plain install, on SQLite

    site = workdir / "site"
    site.mkdir()
    run(venv / "bin" / "django-admin", "startproject", "mysite", site, cwd=workdir)
    app = site / "greetings"
    app.mkdir()
    (app / "__init__.py").touch()
    (app / "models.py").write_text(MODELS)
    (app / "admin.py").write_text(ADMIN)
    with (site / "mysite" / "settings.py").open("a") as settings:
        settings.write(SETTINGS)
    with (site / "mysite" / "urls.py").open("a") as urls:
        urls.write(URLS)
    return Installed(venv, workdir, site)


def test_the_readme_names_an_install_that_works_and_says_the_index_lacks_it():
    readme = (REPO / "README.md").read_text()
    assert "not on the Python Package Index yet" in readme
    assert [command[:3] for command in readme_commands("install")][:1] == [
        ["pip", "install", f"./{CLONE}"]
    ]


def test_the_readmes_wheel_carries_the_app_with_its_migrations_and_templates(installed):
    (build,) = readme_commands("wheel")
    dist = installed.workdir / "dist"
    pip(installed.python, [*build, "-w", str(dist)], installed.workdir)
    (wheel,) = dist.glob("*.whl")
    assert wheel.name == "django_model_jobs-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    assert top_level == {"jobs", "django_model_jobs-0.1.0.dist-info"}

    where = run(installed.python, "-c", "import jobs; print(jobs.__path__[0])", cwd=installed.site)
    package = Path(where.strip())
    assert package.is_relative_to(installed.venv), f"jobs imported from {package}, not the venv"
    assert (package / "templates" / "admin" / "jobs" / "dashboard.html").is_file()
    assert (package / "migrations" / "0001_initial.py").is_file()
    assert package_files(package) == package_files(REPO / "jobs")


def test_a_new_project_without_psycopg_or_logging_settings_runs_jobs_and_shows_their_lines(
    installed,
):
    installed.manage("check", "--fail-level", "WARNING")
    made = installed.manage("makemigrations", "greetings")
    assert "Create model SyncAccount" in made
    (migration,) = (installed.site / "greetings" / "migrations").glob("0001_*.py")
    assert "concurrency_slot" in migration.read_text()  # the limit's column and constraints
    installed.manage("migrate")
    installed.manage("shell", "-c", ENQUEUE)

    worker = installed.manage_result("runjobs", "--burst")
    assert worker.returncode == 0, worker.stderr
    console = worker.stderr
    assert "INFO jobs.execution: greetings.SendGreeting#1 started" in console
    assert "INFO greetings.models: greeting world" in console
    assert "INFO jobs.execution: greetings.SendGreeting#1 succeeded" in console
    assert "ERROR jobs.execution: greetings.SendGreeting#2 failed" in console
    assert "LookupError: nobody to greet" in console

    outcome = installed.manage("shell", "-c", OUTCOME).splitlines()[-1]  # after shell's banner
    assert outcome == '{"states": ["succeeded", "failed"], "greetings": ["hello world"]}'
    page = installed.manage("shell", "-c", ADMIN_PAGE)
    assert "Log of the latest attempt" in page
    assert "INFO greetings.models: greeting world" in page

    # A limited model and an iteration, in the same fresh project, with the defaults.
    assert console.count("INFO greetings.models: synced acme in slot 0") == 3  # one at a time
    assert "INFO greetings.models: synced globex in slot 0" in console
    installed.manage("shell", "-c", ITERATE)
    second = installed.manage_result("runjobs", "--burst")
    assert second.returncode == 0, second.stderr
    assert "INFO greetings.models: counted hello world" in second.stderr
    flow = json.loads(installed.manage("shell", "-c", FLOW_OUTCOME).splitlines()[-1])
    assert flow == {"syncs": [["succeeded", 1]] * 4, "counts": [["succeeded", 1, 1]]}
