"""The framework's own job models in the admin: latency probes and tasks appear only in a project
that uses them (`jobs.models.discovery.served_models()`), and no one adds their rows by hand."""

import pytest
from django.urls import reverse

from jobs.contrib.tasks.api import IMMEDIATE_BACKEND
from jobs.contrib.tasks.models import TaskJob
from jobs.models import LatencyProbe
from tests.settings_probe import JOBS_QUEUES as PROBED_QUEUES

pytestmark = pytest.mark.django_db

INDEX = reverse("admin:index")
PROBES = reverse("admin:jobs_latencyprobe_changelist")
TASKS = reverse("admin:jobs_tasks_taskjob_changelist")
# A Tasks API backend that runs tasks at once: the project stores none in jobs_tasks.TaskJob.
IMMEDIATE_TASKS = {"default": {"BACKEND": IMMEDIATE_BACKEND}}


def test_probes_are_hidden_where_no_queue_is_probed(admin_client, settings):
    settings.JOBS_QUEUES = {"average_slow": {"sla": "30s"}}
    LatencyProbe(queue="average_slow").enqueue()  # left over from when it had one
    assert f'href="{PROBES}"' not in admin_client.get(INDEX).content.decode()
    assert admin_client.get(PROBES).status_code == 403


def test_probes_are_shown_where_a_queue_is_probed(admin_client, settings):
    settings.JOBS_QUEUES = PROBED_QUEUES
    beat = LatencyProbe(queue="average_slow").enqueue()
    assert f'href="{PROBES}"' in admin_client.get(INDEX).content.decode()
    response = admin_client.get(PROBES)
    assert [row.pk for row in response.context["cl"].result_list] == [beat.pk]


def test_tasks_are_hidden_without_the_database_tasks_backend(admin_client, settings):
    settings.TASKS = IMMEDIATE_TASKS
    assert f'href="{TASKS}"' not in admin_client.get(INDEX).content.decode()
    assert admin_client.get(TASKS).status_code == 403


def test_tasks_are_shown_with_the_database_tasks_backend(admin_client):
    task = TaskJob.objects.create(task_path="tests.testapp.tasks.shout", args=["hi"])
    assert f'href="{TASKS}"' in admin_client.get(INDEX).content.decode()
    assert [row.pk for row in admin_client.get(TASKS).context["cl"].result_list] == [task.pk]


def test_probes_and_tasks_are_never_added_by_hand(admin_client, settings):
    settings.JOBS_QUEUES = PROBED_QUEUES
    index = admin_client.get(INDEX).content.decode()
    for model in ("jobs_latencyprobe", "jobs_tasks_taskjob"):
        add = reverse(f"admin:{model}_add")
        assert f'href="{add}"' not in index
        assert admin_client.get(add).status_code == 403
        changelist = admin_client.get(reverse(f"admin:{model}_changelist"))
        assert f'href="{add}"' not in changelist.content.decode()


def test_a_broken_queue_setting_leaves_probes_shown(admin_client, settings):
    """`manage.py check` names the mistake; the admin still shows the rows there are."""
    settings.JOBS_QUEUES = {"average_slow": {"probe": "yes please"}}
    assert admin_client.get(PROBES).status_code == 200
