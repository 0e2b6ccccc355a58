"""`python -m bench.dashboard` at a tiny size: it fills the table and reports the page's cost."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.integration
def test_bench_dashboard_reports_one_query_per_job_model_and_the_time(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bench.sqlite3'}",
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bench.dashboard", "--finished-rows", "3000", "--runs", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("BENCH_JSON "), result.stdout
    report = json.loads(last.removeprefix("BENCH_JSON "))

    assert report["rows_in_table"] == 3000 + 1_000 + 16 + 100  # history, backlog, scheduled
    assert report["summary"]["queries"] == report["job_models"]
    # The session and the user, then one query per job model and one for the workers.
    assert report["page"]["queries"] == 2 + report["job_models"] + 1
    assert report["page"]["median_ms"] > 0
