"""`python -m bench` at a tiny size: it runs end to end and reports every number it promises.

On its own SQLite file whatever database the suite uses, so it neither needs nor touches the
test database; the numbers are not checked against targets, only that they exist.
"""

import pytest

from tests.conftest import run_bench

SMALL = [
    "--runs",
    "1",
    "--jobs",
    "200",
    "--finished-rows",
    "2000",
    "--memory-jobs",
    "0",
    "--only",
    "W1,W2,W3,W4",
]
WORKLOAD_KEYS = {
    "W1": {"single_jobs_per_s", "bulk_jobs_per_s"},
    "W2": {"1p_jobs_per_s", "1p_wall_s", "2p_jobs_per_s", "2p_wall_s"},
    "W3": {"p50_ms", "p95_ms", "max_ms"},
    "W4": {"1p_jobs_per_s", "1p_wall_s", "2p_jobs_per_s", "2p_wall_s"},
}


@pytest.mark.integration
def test_bench_runs_every_workload_and_prints_its_numbers_as_json(tmp_path):
    report = run_bench(tmp_path, "bench", *SMALL)

    assert report["database"] == "sqlite"
    for workload, keys in WORKLOAD_KEYS.items():
        assert keys <= report[workload].keys(), workload
        assert all(report[workload][key] > 0 for key in keys), report[workload]
        assert len(report[workload]["runs"]) == 1
    assert report["W4"]["finished_rows"] == 2000
    assert report["W4"]["explain"] == "skipped: PostgreSQL only"
    assert set(report["ratios"]) == {"W4 / W2, 1 process", "W4 / W2, 2 processes"}
    assert "floor" not in report
    assert "memory" not in report
