"""`python -m bench` at a tiny size: it runs end to end and reports every number it promises.

On its own SQLite file whatever database the suite uses, so it neither needs nor touches the
test database; the numbers are not checked against targets, only that they exist, for every
configuration each workload promises. The floors run on PostgreSQL and MariaDB and Celery on
PostgreSQL only, so here they must say they were skipped. Three invocations, so each stays
inside run_bench's timeout. Once, in the SQLite pass: the other passes would run the same.
"""

import pytest

from tests.conftest import once, run_bench

pytestmark = once

TINY = ["--runs", "1", "--jobs", "100", "--latency-jobs", "10", "--memory-jobs", "0"]
DRAIN = {f"{processes}p_{key}" for processes in (1, 2) for key in ("jobs_per_s", "wall_s")}
LATENCY = {"p50_ms", "p95_ms", "max_ms", "create_p50_ms", "create_p95_ms", "create_max_ms"}


def keys(slugs: tuple[str, ...], suffixes: set[str]) -> set[str]:
    return {f"{slug}_{suffix}" for slug in slugs for suffix in suffixes}


def assert_numbers(report: dict, workload: str, expected: set[str]) -> None:
    found = report[workload]
    assert expected <= found.keys(), (workload, expected - found.keys())
    assert all(found[key] > 0 for key in expected), found
    assert len(found["runs"]) == 1


@pytest.mark.integration
def test_bench_measures_users_and_tuned_configurations_with_end_to_end_latency(tmp_path):
    report = run_bench(tmp_path, "bench", *TINY, "--only", "W1,W2,W3,floor,celery")

    assert report["database"] == "sqlite"
    assert_numbers(
        report, "W1", {"single_jobs_per_s", "one_statement_jobs_per_s", "bulk_jobs_per_s"}
    )
    assert_numbers(report, "W2", keys(("defaults_example", "tuned_one"), DRAIN))
    assert_numbers(report, "W3", keys(("defaults_example", "tuned_one"), LATENCY))
    # The example project serves its own job models beside NoopJob; one model is NoopJob alone.
    assert "instances.InstanceProvision" in report["W2"]["defaults_example_2p_served"]
    assert "jobs_tasks.TaskJob" in report["W2"]["defaults_example_2p_served"]
    assert report["W2"]["tuned_one_2p_served"] == "bench.NoopJob"
    assert report["configurations"]["defaults_example"]["threads"] is None
    # What "defaults" meant: the threads the worker said it runs, whatever the default is.
    assert report["W2"]["defaults_example_1p_threads"] >= 1
    assert report["W2"]["tuned_one_1p_threads"] == 16
    assert report["floor"] == "skipped: PostgreSQL, MariaDB and MySQL only"
    assert report["celery"].startswith("skipped")
    assert report["ratios"] == {}  # every ratio is to a floor or Celery, skipped here


@pytest.mark.integration
def test_bench_drains_beside_history_and_with_twenty_job_models(tmp_path):
    report = run_bench(tmp_path, "bench", *TINY, "--finished-rows", "500", "--only", "W4,W5")

    assert_numbers(report, "W4", keys(("tuned_one",), DRAIN))
    assert report["W4"]["finished_rows"] == 500
    assert report["W4"]["explain"] == "skipped: PostgreSQL only"
    slugs = ("tuned_one", "tuned_many", "defaults_one", "defaults_many")
    assert_numbers(report, "W5", keys(slugs, DRAIN))
    served = report["W5"]["tuned_many_1p_served"].split(", ")
    assert len(served) == 20
    assert "bench.NoopJob" in served
    assert report["W5"]["idle_scans"] == "skipped: PostgreSQL only"
    assert {name for name in report["ratios"] if name.startswith("W5 / W2")} == {
        f"W5 / W2, {p}p [{threads}, 20 models / one model]"
        for p in (1, 2)
        for threads in ("--threads 16", "defaults")
    }
    assert "W4 / W2, 1p [--threads 16, one model]" not in report["ratios"]  # W2 was not run


@pytest.mark.integration
def test_bench_drains_from_a_backlog_and_reports_memory(tmp_path):
    args = [*TINY[:-2], "--memory-jobs", "100", "--backlog-rows", "2000", "--only", "W2,W6,memory"]
    report = run_bench(tmp_path, "bench", *args)

    assert_numbers(report, "W6", {"2p_jobs_per_s", "done"})
    assert report["W6"]["done"] >= 100
    assert report["W6"]["backlog_rows"] == 2000
    assert "W6 / W2, 2p [--threads 16, one model]" in report["ratios"]
    memory = report["memory"]
    assert memory["idle_mb"] > 0
    assert memory["final_mb"] > 0
    assert "growth_mb" in memory
    assert [jobs for jobs, _ in memory["curve"]] == [0, 100]
    assert memory["configuration"] == "defaults, example project"


@pytest.mark.integration
def test_bench_drains_a_model_with_a_concurrency_limit_beside_its_twin_without_one(tmp_path):
    report = run_bench(tmp_path, "bench", *TINY, "--only", "W7")

    slugs = ("defaults_limited", "defaults_keyed")
    paired = {f"paired_{key}" for key in ("1p_jobs_per_s", "2p_jobs_per_s", "p50_ms", "p95_ms")}
    assert_numbers(report, "W7", keys(slugs, DRAIN | LATENCY) | paired)
    found = report["W7"]
    # Each worker serves its one model: neither side claims from the other's table.
    assert found["defaults_limited_1p_served"] == "bench.LimitedNoopJob"
    assert found["defaults_keyed_2p_served"] == "bench.KeyedNoopJob"
    assert report["configurations"]["defaults_limited"]["threads"] is None
    # The ratio is taken within the run, limited over unlimited.
    for key in ("1p_jobs_per_s", "p50_ms"):
        ratio = found[f"defaults_limited_{key}"] / found[f"defaults_keyed_{key}"]
        assert found[f"paired_{key}"] == pytest.approx(ratio)
    assert found["explain"] == "skipped: PostgreSQL only"
