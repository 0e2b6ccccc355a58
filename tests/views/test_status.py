"""jobs.views.status: 202 Accepted with a status resource, 303 See Other to the result,
and Expect."""

import json
import math

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from jobs.conf import lease_duration
from jobs.models import JobState
from jobs.views.status import Expectation, ExpectationFailed, accepted, status_url
from project.instances import provider
from project.instances.models import Instance, InstanceProvision, IpAttachment
from tests.conftest import NOON
from tests.factories import InstanceFactory, RecordingJobFactory, StepJobFactory
from tests.testapp.models import Effect, RecordingJob, StepJob

CREATE_URL = reverse("instance-create")


def detail_url(instance: Instance) -> str:
    return reverse("instance-detail", args=[instance.pk])


def provision_status_url(job_pk: int) -> str:
    return reverse("jobs-status", args=["instances.instanceprovision", job_pk])


def post_instance(client: Client, name: str = "web-1", **headers: str):
    return client.post(CREATE_URL, {"name": name}, headers=headers)


def assert_nothing_created() -> None:
    assert Instance.objects.count() == 0
    assert InstanceProvision.objects.count() == 0


# POST /instances/: 202 Accepted, Location of the job's status resource


@pytest.mark.django_db
def test_post_answers_202_with_the_location_of_the_provisions_status(client):
    response = post_instance(client)
    assert response.status_code == 202
    job = InstanceProvision.objects.get()
    assert job.state == JobState.PENDING
    assert response["Location"] == provision_status_url(job.pk)
    body = response.json()
    assert (body["id"], body["model"], body["state"], body["status_url"]) == (
        job.pk,
        "instances.InstanceProvision",
        "pending",
        response["Location"],
    )
    assert body["instance_url"] == detail_url(job.instance)
    assert response["Retry-After"] == "1"  # due now: a worker starts it within a second


@pytest.mark.django_db
def test_a_202_for_a_job_due_later_says_to_retry_after_it_is_due(frozen):
    due_now = accepted(RecordingJobFactory(enqueue=True))
    delayed = accepted(RecordingJobFactory(enqueue=True, enqueue__delay=90.2))
    overdue = RecordingJobFactory(enqueue=True)
    frozen.now = NOON + lease_duration()
    assert (due_now["Retry-After"], delayed["Retry-After"]) == ("1", "91")
    assert accepted(overdue)["Retry-After"] == "1"


@pytest.mark.django_db
def test_the_status_url_finds_the_job_by_its_label_as_logs_write_it(admin_client):
    job = InstanceProvision.objects.get(pk=post_instance(admin_client).json()["id"])
    url = reverse("jobs-status", args=["instances.InstanceProvision", job.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert response.json()["status_url"] == provision_status_url(job.pk)  # lower case


@pytest.mark.django_db
def test_polling_a_pending_job_answers_its_state_and_when_it_was_requested(admin_client, frozen):
    location = post_instance(admin_client)["Location"]
    response = admin_client.get(location)
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    job = InstanceProvision.objects.get()
    assert response.json() == {
        "id": job.pk,
        "model": "instances.InstanceProvision",
        "state": "pending",
        "progress": None,
        "attempts": 0,
        "max_attempts": 5,
        "requested_at": "2026-11-22T12:00:00Z",
        "run_at": "2026-11-22T12:00:00Z",
        "started_at": None,
        "finished_at": None,
        "error": None,
        "result_url": None,
        "status_url": location,
    }


@pytest.mark.django_db
def test_polling_a_running_job_shows_its_progress(admin_client, monkeypatch):
    job = StepJobFactory(steps=2, enqueue=True)
    polled = []
    set_progress = StepJob.set_progress

    def set_progress_then_poll(self, done, total=None):
        set_progress(self, done, total)
        polled.append(admin_client.get(status_url(self)).json())

    monkeypatch.setattr(StepJob, "set_progress", set_progress_then_poll)
    job.run()
    assert [(body["state"], body["progress"]) for body in polled] == [
        ("running", {"done": 1, "total": 2}),
        ("running", {"done": 2, "total": 2}),
    ]
    assert all(body["started_at"] and body["finished_at"] is None for body in polled)
    assert polled[0]["attempts"] == 1


@pytest.mark.django_db
def test_polling_a_failed_job_shows_its_error_type_and_message_but_no_traceback(admin_client):
    job = RecordingJobFactory(label_text="x", fail=True, enqueue=True).run()
    assert job.state == JobState.FAILED
    response = admin_client.get(status_url(job))
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "failed"
    assert body["error"] == {"type": "tests.testapp.models.Boom", "message": "boom in x"}
    assert body["finished_at"] is not None
    assert "Traceback" not in response.content.decode()
    assert job.error_traceback.startswith("Traceback")


@pytest.mark.django_db
def test_polling_a_retry_shows_why_the_last_attempt_failed(admin_client, monkeypatch):
    def out_of_capacity(name, *, client_token):
        raise provider.ProviderError("out of capacity")

    monkeypatch.setattr(provider, "create_server", out_of_capacity)
    location = post_instance(admin_client)["Location"]
    InstanceProvision.objects.get().run()
    body = admin_client.get(location).json()
    assert (body["state"], body["attempts"]) == ("pending", 1)
    assert body["error"] == {
        "type": "project.instances.provider.ProviderError",
        "message": "out of capacity",
    }


@pytest.mark.django_db
def test_after_success_the_status_sends_the_caller_to_the_instance_with_303(admin_client):
    location = post_instance(admin_client)["Location"]
    job = InstanceProvision.objects.get().run()
    response = admin_client.get(location)
    assert response.status_code == 303
    assert response["Location"] == detail_url(job.instance)
    assert response.json()["state"] == "succeeded"
    followed = admin_client.get(location, follow=True)
    assert followed.redirect_chain == [(detail_url(job.instance), 303)]
    assert followed.json()["state"] == "booted"  # the address comes next, from its own job
    IpAttachment.objects.get().run()
    assert admin_client.get(location, follow=True).json()["state"] == "ready"


@pytest.mark.django_db
def test_a_succeeded_job_without_a_result_url_is_200_with_state_succeeded(admin_client):
    job = RecordingJobFactory(enqueue=True).run()
    response = admin_client.get(status_url(job))
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["result_url"]) == ("succeeded", None)


@pytest.mark.django_db
def test_head_on_a_status_answers_like_get(admin_client):
    job = RecordingJobFactory(enqueue=True)
    assert admin_client.head(status_url(job)).status_code == 200
    job.run()
    assert admin_client.head(status_url(job)).status_code == 200


@pytest.mark.django_db
def test_post_to_a_status_is_405_not_a_csrf_refusal(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    job = RecordingJobFactory(enqueue=True)
    response = client.post(status_url(job))
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


# Who may read a status: the job model decides; everyone else gets 404, never 403


@pytest.mark.django_db
def test_a_status_is_404_for_anonymous_and_non_staff_callers(client, django_user_model):
    job = RecordingJobFactory(enqueue=True)
    assert client.get(status_url(job)).status_code == 404
    client.force_login(django_user_model.objects.create_user("alice", password="pw"))
    assert client.get(status_url(job)).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "label",
    ["instances.instance", "auth.user", "nope.nothing", "instances", "instances.provision.x"],
)
def test_a_label_that_is_not_a_job_model_is_404(admin_client, admin_user, label):
    """Not even for a model with a row of that pk (the admin user, the instance)."""
    InstanceFactory(pk=admin_user.pk)
    response = admin_client.get(reverse("jobs-status", args=[label, admin_user.pk]))
    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("pk", ["999999", "abc", "-1", "99999999999999999999"])
def test_an_unknown_or_malformed_pk_is_404(admin_client, pk):
    RecordingJobFactory(enqueue=True)
    response = admin_client.get(reverse("jobs-status", args=["testapp.recordingjob", pk]))
    assert response.status_code == 404


@pytest.mark.django_db
def test_a_hidden_job_and_a_missing_one_get_the_same_answer(client):
    job = RecordingJobFactory(enqueue=True)
    hidden = client.get(status_url(job))
    missing = client.get(reverse("jobs-status", args=["testapp.recordingjob", job.pk + 1]))
    assert (hidden.status_code, hidden.content) == (missing.status_code, missing.content)


@pytest.mark.django_db
def test_a_job_model_may_show_its_status_to_whom_it_decides(client, monkeypatch):
    seen = []

    def visible_to_alice(self, request):
        seen.append((self.pk, request.GET.get("as")))
        return request.GET.get("as") == "alice"

    monkeypatch.setattr(RecordingJob, "status_visible_to", visible_to_alice)
    job = RecordingJobFactory(enqueue=True)
    assert client.get(status_url(job), {"as": "alice"}).status_code == 200
    assert client.get(status_url(job), {"as": "bob"}).status_code == 404
    assert seen == [(job.pk, "alice"), (job.pk, "bob")]


# Expect: 200-ok runs the job in the request; 202-accepted (or none) does not


@pytest.mark.django_db
def test_expect_200_ok_provisions_in_the_request_and_answers_303_to_the_instance(client):
    response = post_instance(client, Expect="200-ok")
    job = InstanceProvision.objects.get()
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert response.status_code == 303
    assert response["Location"] == detail_url(job.instance)
    assert response.json()["state"] == "succeeded"
    # The request provisioned the server; its address attachment, released by that success,
    # is a worker's to run.
    assert client.get(response["Location"]).json()["state"] == "booted"
    assert IpAttachment.objects.get().state == JobState.PENDING


@pytest.mark.django_db
def test_expect_is_read_without_regard_to_case_or_a_100_continue(client):
    response = post_instance(client, Expect="100-continue, 200-OK")
    assert response.status_code == 303
    assert InstanceProvision.objects.get().state == JobState.SUCCEEDED


@pytest.mark.django_db
def test_an_inline_run_that_fails_for_good_answers_500_with_its_error(client, monkeypatch):
    def refuse(name, *, client_token):
        raise provider.ProviderError("quota exceeded")

    monkeypatch.setattr(provider, "create_server", refuse)
    monkeypatch.setattr(InstanceProvision, "discard_on", (provider.ProviderError,))
    response = post_instance(client, Expect="200-ok")
    job = InstanceProvision.objects.get()
    assert job.state == JobState.FAILED
    assert response.status_code == 500
    assert response["Content-Location"] == provision_status_url(job.pk)
    body = response.json()
    assert (body["state"], body["instance"]) == ("failed", job.instance_id)
    assert body["error"] == {
        "type": "project.instances.provider.ProviderError",
        "message": "quota exceeded",
    }
    assert "Traceback" not in response.content.decode()


@pytest.mark.django_db
def test_an_inline_attempt_that_will_be_retried_answers_202_until_its_retry(
    client, monkeypatch, frozen
):
    def out_of_capacity(name, *, client_token):
        raise provider.ProviderError("out of capacity")

    monkeypatch.setattr(provider, "create_server", out_of_capacity)
    response = post_instance(client, Expect="200-ok")
    job = InstanceProvision.objects.get()
    assert (job.state, job.attempts) == (JobState.PENDING, 1)
    assert response.status_code == 202
    assert response["Location"] == provision_status_url(job.pk)
    backoff = math.ceil((job.run_at - NOON).total_seconds())
    assert backoff > 1
    assert response["Retry-After"] == str(backoff)


@pytest.mark.django_db
def test_an_inline_job_is_due_only_after_a_lease_so_no_worker_races_the_request(frozen):
    request = RequestFactory().post("/", headers={"Expect": "200-ok"})
    expect = Expectation.read(request, RecordingJob)
    job = expect.start(RecordingJob.objects.create())
    assert (job.state, job.run_at) == (JobState.PENDING, NOON + lease_duration())
    assert not RecordingJob.objects.runnable().exists()
    response = expect.respond(job)
    assert response.status_code == 200
    assert (json.loads(response.content)["state"], Effect.objects.count()) == ("succeeded", 1)


@pytest.mark.django_db
@pytest.mark.parametrize("expect", ["202-accepted", "202-Accepted, 100-continue", ""])
def test_expect_202_accepted_or_none_leaves_the_job_to_the_workers(client, expect):
    response = post_instance(client, **({"Expect": expect} if expect else {}))
    assert response.status_code == 202
    job = InstanceProvision.objects.get()
    assert (job.state, job.attempts) == (JobState.PENDING, 0)
    assert job.instance.state == Instance.State.REQUESTED


@pytest.mark.django_db
def test_expect_200_ok_for_a_job_that_does_not_run_inline_is_417_and_creates_nothing(
    client, monkeypatch
):
    monkeypatch.setattr(InstanceProvision, "runs_inline", False)
    response = post_instance(client, Expect="200-ok")
    assert response.status_code == 417
    assert response.json() == {
        "error": "instances.InstanceProvision jobs do not run inline: send Expect: "
        "202-accepted, or no Expect, and follow the Location of the 202"
    }
    assert_nothing_created()
    assert post_instance(client, Expect="202-accepted").status_code == 202


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("expect", "error"),
    [
        ("201-created", "unsupported expectation: 201-created; send Expect: 202-accepted or"),
        ("200-ok; wait=5", "unsupported expectation: 200-ok; wait=5; send Expect: "),
        ("202-accepted, 200-ok", "Expect: 202-accepted and 200-ok contradict each other"),
    ],
)
def test_an_expectation_it_cannot_meet_is_417_and_creates_nothing(client, expect, error):
    response = post_instance(client, Expect=expect)
    assert response.status_code == 417
    assert response.json()["error"].startswith(error)
    assert_nothing_created()


@pytest.mark.django_db
def test_the_expectation_is_refused_before_the_form_is_even_read(client):
    assert post_instance(client, "Bad_Name!", Expect="201-created").status_code == 417
    assert post_instance(client, "Bad_Name!", Expect="200-ok").status_code == 400
    assert_nothing_created()


def test_expectation_failed_carries_its_417_response():
    request = RequestFactory().post("/", headers={"Expect": "teapot"})
    with pytest.raises(ExpectationFailed) as refused:
        Expectation.read(request, RecordingJob)
    assert refused.value.response.status_code == 417
