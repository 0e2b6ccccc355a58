"""`python -m bench.dashboard` at a tiny size: it fills the table and reports the page's cost."""

import pytest

from tests.conftest import once, run_bench

pytestmark = once


@pytest.mark.integration
def test_bench_dashboard_reports_one_query_per_job_model_and_the_time(tmp_path):
    report = run_bench(tmp_path, "bench.dashboard", "--finished-rows", "3000", "--runs", "1")

    assert report["rows_in_table"] == 3000 + 1_000 + 16 + 100  # history, backlog, scheduled
    assert report["summary"]["queries"] == report["job_models"]
    # The session and the user, then one query per job model, one for the workers and one
    # for the queue pauses; one more for the last hour's failures by type, if any failed;
    # for the memory growth ranking, one per model that finished jobs in the hour and one
    # per model ranked (its worst job).
    failures = 1 if report["failed_last_hour"] else 0
    memory = report["finished_models"] + report["memory_ranked"]
    assert report["memory_ranked"] == report["finished_models"] == 1  # one in 20 grew
    assert report["page"]["queries"] == 2 + report["job_models"] + 2 + failures + memory
    assert report["memory"]["queries"] == memory
    assert report["page"]["median_ms"] > 0
    assert report["workers_page"]["median_ms"] > 0
    tabs = report["live_tabs"]
    assert tabs["tabs"] == 10
    assert tabs["page_ms_per_s"] == pytest.approx(2 * report["page"]["median_ms"])
