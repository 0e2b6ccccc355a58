"""A paused queue in the health report: a `paused` warning, never `over_sla` nor a stale
probe; a model's pause leaves that model's waiting rows out of the queue's oldest wait."""

import pytest

from jobs.models import QueuePause
from tests.factories import RecordingJobFactory, UrgentJobFactory
from tests.monitoring.test_health import NOON, SECOND, codes, problems, urgent  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_paused_queue_past_its_sla_is_a_paused_warning_not_critical(urgent):  # noqa: F811
    UrgentJobFactory.create_batch(3, enqueue=True)
    urgent.now = NOON + 45 * SECOND
    assert codes(queue="urgent") == ["over_sla"]
    QueuePause.objects.pause("urgent", reason="a secret reason")
    QueuePause.objects.filter(queue="urgent").update(paused_at=NOON + 5 * SECOND)
    assert problems(queue="urgent") == [
        (
            "warning",
            "paused",
            "urgent",
            "queue urgent: paused since 2026-11-22 12:00:05 UTC (40s ago); 3 jobs are waiting",
        )
    ]
    QueuePause.objects.resume("urgent")
    assert codes(queue="urgent") == ["over_sla"]


def test_a_paused_model_s_rows_are_not_its_queue_s_wait(urgent):  # noqa: F811
    UrgentJobFactory.create_batch(2, enqueue=True)
    RecordingJobFactory(enqueue=True, enqueue__queue="urgent", enqueue__run_at=NOON + 30 * SECOND)
    urgent.now = NOON + 45 * SECOND
    QueuePause.objects.pause("urgent", model="testapp.UrgentJob")
    QueuePause.objects.filter(queue="urgent").update(paused_at=NOON)
    assert problems(queue="urgent") == [
        (
            "warning",
            "paused",
            "urgent",
            "queue urgent: one job model of it is paused since 2026-11-22 12:00:00 UTC (45s ago)",
        )
    ]
    QueuePause.objects.resume("urgent", model="testapp.UrgentJob")
    assert codes(queue="urgent") == ["over_sla"]
