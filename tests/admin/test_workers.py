"""The workers page: each process's memory over time and its recycles for --max-memory, why a
stopped process stopped, and an autoscaling supervisor's range and decisions."""

from datetime import timedelta

import pytest
from django.urls import reverse

from jobs.models import Worker
from tests.admin.test_dashboard import worker_row
from tests.conftest import NOON

pytestmark = pytest.mark.django_db

WORKERS = reverse("admin:jobs_worker_changelist")
T0 = int(NOON.timestamp())


def row_of(page: str, name: str) -> str:
    return page[page.index(f">{name}<") :].split("</tr>")[0]


def test_each_process_shows_its_memory_now_as_a_line_over_time_and_its_recycles(
    admin_client, frozen
):
    samples = [[T0 - 60 * (9 - n), 100 + 10 * n] for n in range(10)]
    worker_row("host:1", memory_mb=190, memory_samples=samples, memory_recycles=0, threads=4)
    worker_row("host:2", memory_mb=None)
    supervisor = worker_row("host:3", memory_mb=40, memory_samples=samples[:1], memory_recycles=3)
    page = admin_client.get(WORKERS).content.decode()
    leaking = row_of(page, "host:1")
    assert '<svg class="worker-memory" width="60" height="18"' in leaking
    assert "<title>100 to 190 MB</title>" in leaking
    assert "1.0,17.0" in leaking  # the first reading: left, at the bottom (the lowest)
    assert "59.0,1.0" in leaking  # the last: right, at the top (the highest)
    assert "&nbsp;190&nbsp;MB" in leaking
    assert "recycle" not in leaking
    assert '<td class="field-memory">-</td>' in row_of(page, "host:2")
    counted = row_of(page, "host:3")
    assert "<svg" not in counted  # one reading draws no line
    assert "3 recycle(s) for --max-memory" in counted

    detail = admin_client.get(reverse("admin:jobs_worker_change", args=[supervisor.pk]))
    assert detail.status_code == 200
    one = admin_client.get(
        reverse("admin:jobs_worker_change", args=[Worker.objects.get(name="host:1").pk])
    ).content.decode()
    assert '<svg class="worker-memory" width="480" height="80"' in one
    assert "100 to 190 MB (lowest 100, highest 190) from 11:51:00 to 12:00:00 UTC" in one


def test_a_stopped_process_says_why_and_the_text_is_escaped(admin_client, frozen):
    worker_row(
        "host:4",
        state=Worker.State.STOPPED,
        stop_reason="recycled: held 812 MB (--max-memory 800) <b>",
    )
    worker_row("host:5", stop_reason="not shown while it runs")
    page = admin_client.get(WORKERS).content.decode()
    assert "recycled: held 812 MB (--max-memory 800) &lt;b&gt;" in row_of(page, "host:4")
    assert "not shown while it runs" not in page


def test_an_autoscaling_supervisor_shows_its_range_and_decisions(admin_client, frozen):
    decisions = [
        {"at": (NOON - timedelta(seconds=30)).isoformat(), "from": 1, "to": 2, "why": "late"},
        {"at": NOON.isoformat(), "from": 2, "to": 2, "why": "held at 2: CPUs <busy>"},
    ]
    supervisor = worker_row(
        "host:6",
        min_processes=1,
        max_processes=3,
        processes_wanted=2,
        scaling_decisions=decisions,
    )
    worker_row("host:7", min_processes=2, max_processes=2, processes_wanted=2)
    page = admin_client.get(WORKERS).content.decode()
    scaling = row_of(page, "host:6")
    assert "keeps 2 of 1-3; 12:00:00 stayed at 2: held at 2: CPUs &lt;busy&gt;" in scaling
    assert "11:59:30 1 → 2: late" in scaling  # the whole history, on hover
    assert "keeps" not in row_of(page, "host:7")  # a fixed --processes 2
    detail = admin_client.get(reverse("admin:jobs_worker_change", args=[supervisor.pk]))
    text = detail.content.decode()
    assert text.index("12:00:00 stayed at 2") < text.index("11:59:30 1 → 2: late")
