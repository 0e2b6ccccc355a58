"""The example domain end to end: the HTTP API, the provisioning job, and `manage.py demo`."""

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse

from jobs import timesource
from jobs.contrib.tasks.models import TaskJob
from jobs.models import JobState
from jobs.testing import assert_enqueued, drain, run_jobs_inline
from project.instances import provider
from project.instances.models import Instance, InstanceProvision, IpAttachment, ProviderServer
from project.instances.services import request_instance
from tests.conftest import manage
from tests.factories import InstanceFactory, InstanceProvisionFactory

CREATE_URL = reverse("instance-create")
NAME_ERROR = "Use lowercase letters, digits and hyphens (at most 63)."


def detail_url(instance) -> str:
    return reverse("instance-detail", args=[instance.pk])


def token(instance) -> str:
    """The idempotency token perform() gives the provider for this instance."""
    return f"instance-{instance.pk}"


def instance_to_provision(name: str = "web-1") -> Instance:
    """A new instance whose pk no provision shares, so the idempotency token cannot come out
    right by coincidence if it were built from the job's pk instead of the instance's."""
    return InstanceFactory(name=name, pk=7001)


def provision(instance) -> InstanceProvision:
    """Enqueue a provision of `instance` and its address attachment, as `request_instance()`
    does, and run them here as a worker would; returns the provision with its outcome."""
    job = InstanceProvisionFactory(instance=instance, enqueue=True)
    attachment = IpAttachment.objects.create(instance=instance).enqueue(after=[job])
    job.run()
    attachment.refresh_from_db()
    if attachment.state == JobState.PENDING:
        attachment.run()
    return job


def assert_provisioned_once(instance) -> ProviderServer:
    """The instance is ready on the one server the provider holds for it."""
    instance.refresh_from_db()
    servers = list(ProviderServer.objects.filter(client_token=token(instance)))
    assert len(servers) == 1, f"the provider holds {servers} for token {token(instance)}"
    [server] = servers
    assert instance.state == Instance.State.READY
    assert instance.provider_id == server.provider_id
    assert server.ip_address is not None
    assert instance.ip_address == server.ip_address
    return server


def assert_nothing_created() -> None:
    assert not Instance.objects.exists()
    assert not InstanceProvision.objects.exists()


# POST /instances/ and GET /instances/<pk>/


@pytest.mark.django_db
def test_post_creates_the_instance_and_a_pending_provision_and_answers_202(client):
    response = client.post(CREATE_URL, {"name": "web-1"})
    assert response.status_code == 202
    instance = Instance.objects.get()
    job = InstanceProvision.objects.get()
    assert (instance.name, instance.state) == ("web-1", Instance.State.REQUESTED)
    assert (job.instance, job.state, job.queue) == (instance, JobState.PENDING, "average_slow")
    assert job.requested_at is not None
    status_url = reverse("jobs-status", args=["instances.instanceprovision", job.pk])
    assert response["Location"] == status_url
    assert response.json() == {
        "id": job.pk,
        "model": "instances.InstanceProvision",
        "state": "pending",
        "status_url": status_url,
        "instance": instance.pk,
        "instance_url": detail_url(instance),
        "admin_url": reverse("admin:instances_instanceprovision_change", args=[job.pk]),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["Bad_Name!", "-leading-hyphen", "trailing-", "a" * 64, "x y"])
def test_post_with_an_invalid_name_is_400_with_the_error_and_creates_nothing(client, name):
    response = client.post(CREATE_URL, {"name": name})
    assert response.status_code == 400
    assert response.json() == {"errors": {"name": [{"message": NAME_ERROR, "code": "invalid"}]}}
    assert_nothing_created()


@pytest.mark.django_db
def test_post_without_a_name_is_400_and_creates_nothing(client):
    response = client.post(CREATE_URL, {})
    assert response.status_code == 400
    assert response.json()["errors"]["name"][0]["code"] == "required"
    assert_nothing_created()


@pytest.mark.django_db
def test_create_url_accepts_only_post(client):
    assert client.get(CREATE_URL).status_code == 405
    assert_nothing_created()


@pytest.mark.django_db(transaction=True)
def test_post_whose_job_cannot_be_enqueued_leaves_no_instance_behind(client, monkeypatch):
    """Instance and job are one transaction: a failure after the instance's INSERT undoes it."""

    def refuse(self, **kwargs):
        raise RuntimeError("queue unavailable")

    monkeypatch.setattr(InstanceProvision, "enqueue", refuse)
    with pytest.raises(RuntimeError, match="queue unavailable"):
        client.post(CREATE_URL, {"name": "web-1"})
    assert_nothing_created()


@pytest.mark.django_db
def test_detail_follows_the_provisioning_from_requested_to_ready(client, drain_jobs):
    client.post(CREATE_URL, {"name": "web-1"})
    instance = Instance.objects.get()
    location = detail_url(instance)
    job = InstanceProvision.objects.get()
    attachment = IpAttachment.objects.get()
    requested = client.get(location)
    assert requested.status_code == 200
    assert requested.json() == {
        "instance": instance.pk,
        "name": "web-1",
        "state": "requested",
        "provider_id": "",
        "ip_address": None,
        "provisions": [{"job": job.pk, "state": "pending", "attempts": 0, "error": ""}],
        "ip_attachments": [{"job": attachment.pk, "state": "waiting", "attempts": 0}],
    }
    provisioned, attached, checked = drain_jobs()
    assert (provisioned, attached) == (job, attachment)
    server = assert_provisioned_once(instance)
    assert checked.return_value == {  # the follow-up written with the Tasks API
        "instance": "web-1",
        "ip_address": server.ip_address,
        "reachable": True,
    }
    ready = client.get(location).json()
    assert (ready["state"], ready["provider_id"], ready["ip_address"]) == (
        "ready",
        server.provider_id,
        server.ip_address,
    )
    assert ready["provisions"] == [
        {"job": job.pk, "state": "succeeded", "attempts": 1, "error": ""}
    ]
    assert ready["ip_attachments"] == [{"job": attachment.pk, "state": "succeeded", "attempts": 1}]


@pytest.mark.django_db
def test_post_in_inline_mode_provisions_the_instance_before_the_test_looks(client, jobs_inline):
    response = client.post(CREATE_URL, {"name": "web-1"})
    assert response.status_code == 202
    instance = Instance.objects.get()
    assert [(type(job), job.state) for job in jobs_inline.ran] == [
        (InstanceProvision, JobState.SUCCEEDED),
        (IpAttachment, JobState.SUCCEEDED),  # waited for the provision: runs once it succeeded
        (TaskJob, JobState.SUCCEEDED),  # the Tasks API follow-up, enqueued by the attachment
    ]
    assert_provisioned_once(instance)
    assert client.get(detail_url(instance)).json()["state"] == "ready"


@pytest.mark.django_db
def test_detail_reports_a_failed_attempt_and_its_error(client):
    instance = InstanceFactory(name="Bad_Name!")  # the form would refuse it; the provider does
    job = provision(instance)
    body = client.get(detail_url(instance)).json()
    assert body["state"] == "requested"
    assert body["provisions"] == [
        {"job": job.pk, "state": "pending", "attempts": 1, "error": job.error_message}
    ]
    assert body["provisions"][0]["error"].startswith("invalid server name 'Bad_Name!'")


@pytest.mark.django_db
def test_detail_of_an_unknown_instance_is_404(client):
    assert client.get(reverse("instance-detail", args=[404])).status_code == 404


# InstanceProvision.perform(): re-entrant, one server per instance


@pytest.mark.django_db
def test_provision_creates_one_server_and_makes_the_instance_ready():
    instance = instance_to_provision()
    job = provision(instance)
    assert job.state == JobState.SUCCEEDED
    server = assert_provisioned_once(instance)
    assert server.name == "web-1"
    assert ProviderServer.objects.count() == 1


@pytest.mark.django_db
def test_rerun_after_a_crash_past_create_server_continues_with_the_same_server():
    """The crash came after the instance recorded its server, before the IP was attached."""
    instance = instance_to_provision()
    instance.provider_id = provider.create_server(instance.name, client_token=token(instance))
    instance.state = Instance.State.BOOTING
    instance.save()
    job = provision(instance)
    assert job.state == JobState.SUCCEEDED
    assert assert_provisioned_once(instance).provider_id == instance.provider_id
    assert ProviderServer.objects.count() == 1


@pytest.mark.django_db
def test_rerun_after_a_crash_before_the_instance_recorded_its_server_reuses_the_server():
    """The provider created the server, but the crash came before the instance saved its id:
    the idempotency token gets the same server back."""
    instance = instance_to_provision()
    created = provider.create_server(instance.name, client_token=token(instance))
    job = provision(instance)
    assert job.state == JobState.SUCCEEDED
    assert assert_provisioned_once(instance).provider_id == created
    assert ProviderServer.objects.count() == 1


@pytest.mark.django_db
def test_rerun_after_a_crash_before_the_instance_recorded_its_ip_keeps_the_same_ip():
    instance = instance_to_provision()
    instance.provider_id = provider.create_server(instance.name, client_token=token(instance))
    instance.save()
    attached = provider.attach_ip(instance.provider_id)
    provision(instance)
    assert assert_provisioned_once(instance).ip_address == attached


@pytest.mark.django_db
def test_retry_after_a_failed_attempt_finishes_the_server_the_first_attempt_created(monkeypatch):
    instance = instance_to_provision()
    wait_until_ready = provider.wait_until_ready
    waits = []

    def boot_times_out_the_first_time(provider_id):
        waits.append(provider_id)
        if len(waits) == 1:
            raise provider.ProviderError(f"{provider_id} did not boot in time")
        wait_until_ready(provider_id)

    monkeypatch.setattr(provider, "wait_until_ready", boot_times_out_the_first_time)
    job = provision(instance)
    assert (job.state, job.attempts) == (JobState.PENDING, 1)
    assert job.error_message.endswith("did not boot in time")
    instance.refresh_from_db()
    assert instance.state == Instance.State.BOOTING
    first_server = instance.provider_id

    assert drain() == [], "the retry waits out its backoff"
    [retry, _attachment, _check] = drain(now=timesource.now() + timedelta(hours=1))
    assert (retry.pk, retry.state, retry.attempts) == (job.pk, JobState.SUCCEEDED, 2)
    assert assert_provisioned_once(instance).provider_id == first_server
    assert waits == [first_server, first_server]
    assert ProviderServer.objects.count() == 1


@pytest.mark.django_db
def test_a_second_provision_of_a_ready_instance_creates_no_second_server():
    instance = instance_to_provision()
    provision(instance)
    first = assert_provisioned_once(instance)
    again = provision(instance)  # a succeeded job cannot be requeued; a new one can run
    assert again.state == JobState.SUCCEEDED
    second = assert_provisioned_once(instance)
    assert (second.pk, second.ip_address) == (first.pk, first.ip_address)
    assert ProviderServer.objects.count() == 1


@pytest.mark.django_db
def test_a_new_provision_after_one_that_died_before_recording_its_server_reuses_it(monkeypatch):
    """The first attempt got its server but failed before saving its id on the instance;
    a second provision of the instance (a new job, not a retry) finds the same server."""
    instance = instance_to_provision()

    def database_gone(*args, **kwargs):
        raise ConnectionError("database went away")

    monkeypatch.setattr(Instance, "save", database_gone)
    first = InstanceProvisionFactory(instance=instance, max_attempts=1, enqueue=True).run()
    monkeypatch.undo()
    assert (first.state, first.error_type) == (JobState.FAILED, "ConnectionError")
    instance.refresh_from_db()
    assert instance.provider_id == ""
    assert ProviderServer.objects.count() == 1

    second = provision(instance)
    assert (second.state, second.attempts) == (JobState.SUCCEEDED, 1)
    assert_provisioned_once(instance)
    assert ProviderServer.objects.count() == 1


@pytest.mark.django_db
def test_provisions_of_different_instances_get_different_servers_and_addresses():
    instances = [InstanceFactory(name=name) for name in ("web-1", "web-2")]
    servers = []
    for instance in instances:
        provision(instance)
        servers.append(assert_provisioned_once(instance))
    assert servers[0].pk != servers[1].pk
    assert servers[0].ip_address != servers[1].ip_address


@pytest.mark.django_db
def test_a_name_the_provider_refuses_fails_the_attempt_without_creating_a_server():
    instance = InstanceFactory(name="Bad_Name!")
    job = InstanceProvisionFactory(instance=instance, max_attempts=1, enqueue=True).run()
    assert (job.state, job.error_type) == (
        JobState.FAILED,
        "project.instances.provider.ProviderError",
    )
    instance.refresh_from_db()
    assert (instance.state, instance.provider_id) == (Instance.State.REQUESTED, "")
    assert not ProviderServer.objects.exists()


# request_instance(): one transaction with the caller's


def request_instance_then_fail(name: str) -> None:
    """A caller that asks for an instance inside its own transaction, then fails."""
    with transaction.atomic():
        job = request_instance(name)
        assert InstanceProvision.objects.filter(pk=job.pk).exists()
        raise RuntimeError("caller changed its mind")


@pytest.mark.django_db(transaction=True)
def test_request_instance_rolls_back_with_the_callers_transaction():
    with run_jobs_inline() as inline, pytest.raises(RuntimeError, match="caller changed its mind"):
        request_instance_then_fail("web-1")
    assert_nothing_created()
    assert inline.ran == [], "a provision that was rolled back never runs"
    assert not ProviderServer.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_request_instance_commits_the_instance_and_its_pending_job_together():
    requested = request_instance("web-1")
    assert assert_enqueued(
        InstanceProvision, count=1, state=JobState.PENDING, instance__name="web-1"
    ) == [requested]


# manage.py demo

DEMO_ROW = re.compile(
    r"^instances\.(InstanceProvision|IpAttachment)#(\d+) +(\w+) +(\d+ of \d+) +(.*)$"
)
FLEET_ROW = re.compile(r"^instances\.FleetReport#\d+ +succeeded +(.*)$", re.MULTILINE)


def demo_report(stdout: str) -> dict[tuple[str, str], tuple[str, str, str]]:
    """The report's rows by (job model, instance name): (state, attempts, result)."""
    rows = {}
    for line in stdout.splitlines():
        if match := DEMO_ROW.match(line):
            model = InstanceProvision if match[1] == "InstanceProvision" else IpAttachment
            job = model.objects.get(pk=match[2])
            rows[(match[1], job.instance.name)] = (match[3], match[4], match[5])
    return rows


def assert_demo_outcome(stdout: str) -> None:
    report = demo_report(stdout)
    names = ("web-1", "web-2", "db-1", "Bad_Name!", "cache-1")
    assert set(report) == {
        (model, n) for n in names for model in ("InstanceProvision", "IpAttachment")
    }
    for name in ("web-1", "web-2", "db-1"):
        instance = Instance.objects.get(name=name)
        state, attempts, result = report[("InstanceProvision", name)]
        assert (state, attempts) == ("succeeded", "1 of 5")
        assert result == f"{name} booted ({instance.provider_id})"
        state, attempts, result = report[("IpAttachment", name)]
        assert (state, attempts, result) == (
            "succeeded",
            "1 of 5",
            f"{name} ready at {instance.ip_address}",
        )
    state, attempts, result = report[("InstanceProvision", "Bad_Name!")]
    assert (state, attempts) == ("pending", "1 of 5")
    assert result.startswith(
        "project.instances.provider.ProviderError: invalid server name 'Bad_Name!'"
    )
    assert re.search(r"; retry at \d\d:\d\d:\d\d$", result)
    assert report[("IpAttachment", "Bad_Name!")] == (
        "waiting",
        "0 of 5",
        "Bad_Name!: waits for its provision to succeed",
    )
    assert report[("InstanceProvision", "cache-1")] == ("cancelled", "0 of 5", "cache-1: cancelled")
    state, _attempts, result = report[("IpAttachment", "cache-1")]
    assert state == "cancelled"
    assert result.startswith("jobs.ParentEnded: instances.InstanceProvision#")
    fleet = FLEET_ROW.search(stdout)
    assert fleet is not None, stdout
    assert fleet[1] == (
        "3 of 3 instances ready (db-1, web-1, web-2); jobs: 6 succeeded, 0 failed, 0 cancelled"
    )
    states = dict(InstanceProvision.objects.values_list("instance__name", "state"))
    assert states == {
        "web-1": JobState.SUCCEEDED,
        "web-2": JobState.SUCCEEDED,
        "db-1": JobState.SUCCEEDED,
        "Bad_Name!": JobState.PENDING,
        "cache-1": JobState.CANCELLED,
    }
    assert ProviderServer.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_demo_command_runs_the_example_and_prints_the_report():
    result = manage("demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "Enqueued 5 provisions (web-1, web-2, db-1, Bad_Name!, cache-1), the first 3 as one "
        "fleet with a report when all are done; cancelled cache-1"
    )
    assert_demo_outcome(result.stdout)


@pytest.mark.django_db(transaction=True)
def test_demo_command_in_process_prints_the_same_report(capsys):
    call_command("demo")
    assert_demo_outcome(capsys.readouterr().out)


def test_demo_against_a_database_without_tables_says_to_migrate(tmp_path):
    result = manage("demo", DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "CommandError: tables missing for instances.InstanceProvision, instances.IpAttachment, "
        "instances.FleetReport: run `python manage.py migrate` first"
    ]
    assert result.stdout == ""
