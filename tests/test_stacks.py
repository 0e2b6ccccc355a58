"""Where is a running job now? The stack of the thread running it, written on its row by the
worker's lease keeper (every few seconds, or at once when asked), masked and bounded; shown
by `jobs stack` and on the job's admin page, with "Refresh stack"."""

import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from jobs import execution, joblog, lease
from jobs.db.wakeup import ask_for_stacks
from jobs.models import JobState
from jobs.models.job import MASK
from jobs.runtime.worker import WorkerLoop
from tests.conftest import in_thread, wait_for
from tests.testapp.models import PhasedJob, RecordingJob

pytestmark = pytest.mark.django_db(transaction=True)


def inner_wait(event: threading.Event, ready: threading.Event, secret: str) -> None:
    ready.set()
    event.wait(10)


def test_a_threads_stack_is_read_masked_and_bounded(monkeypatch):
    go, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=inner_wait, args=(go, ready, "tok-123"))
    thread.start()
    ready.wait(5)
    try:
        text = joblog.stack_of(thread.ident, lambda s: s.replace("inner_wait", MASK))
        assert "event.wait(10)" in text
        assert MASK in text
        assert "inner_wait" not in text
        monkeypatch.setattr(joblog, "STACK_LIMIT", 50)
        assert len(joblog.stack_of(thread.ident, str)) <= 50 + 100  # a note that it was cut
    finally:
        go.set()
        thread.join()
    assert joblog.stack_of(thread.ident, str) == ""  # a thread that ended has none
    assert joblog.stack_of(None, str) == ""


def running_phased(**fields) -> tuple[PhasedJob, threading.Thread]:
    """A PhasedJob claimed and performed on a thread here, as a worker's job thread would."""
    job = PhasedJob.objects.create(**fields).enqueue()
    execution.claim_for_run(job)
    thread = threading.Thread(target=lambda: (execution.execute(job), connection.close()))
    thread.start()
    wait_for(lambda: "first_phase" in joblog.stack_of(job._thread_id, str), 5)
    return job, thread


def finish(job: PhasedJob, thread: threading.Thread) -> None:
    PhasedJob.objects.filter(pk=job.pk).update(go=True)
    PhasedJob.objects.filter(pk=job.pk).cancel()
    thread.join(10)


def test_a_renewal_writes_where_the_job_is_and_its_secrets_stay_masked():
    job, thread = running_phased(secret="tok-very-secret")
    try:
        lease.write_stacks([job])
        row = PhasedJob.objects.get(pk=job.pk)
        assert "in first_phase" in row.stack
        assert "tok-very-secret" not in row.stack
        assert joblog.shows_current_stack(row)
        PhasedJob.objects.filter(pk=job.pk).update(go=True)
        wait_for(lambda: "second_phase" in joblog.stack_of(job._thread_id, str), 5)
        lease.renew_leases([job], job.lease_expires_at)
        assert "in second_phase" in PhasedJob.objects.get(pk=job.pk).stack
    finally:
        finish(job, thread)
    ended = PhasedJob.objects.get(pk=job.pk)
    assert ended.state == JobState.CANCELLED
    assert not joblog.shows_current_stack(ended)


def test_a_stack_is_not_written_over_a_newer_attempt():
    job, thread = running_phased()
    try:
        PhasedJob.objects.filter(pk=job.pk).update(attempts=job.attempts + 1)  # rescued, rerun
        lease.write_stacks([job])
        assert PhasedJob.objects.get(pk=job.pk).stack == ""
    finally:
        PhasedJob.objects.filter(pk=job.pk).update(attempts=job.attempts)
        finish(job, thread)


def test_a_worker_writes_its_jobs_stacks_every_few_seconds(monkeypatch):
    monkeypatch.setattr(lease, "STACK_INTERVAL", 0.2)
    job = PhasedJob.objects.create().enqueue()
    worker = WorkerLoop(burst=False, interval=0.1)
    thread = in_thread(worker)
    try:
        wait_for(lambda: "first_phase" in PhasedJob.objects.get(pk=job.pk).stack, 10)
        PhasedJob.objects.filter(pk=job.pk).update(go=True)
        wait_for(lambda: "second_phase" in PhasedJob.objects.get(pk=job.pk).stack, 10)
    finally:
        PhasedJob.objects.filter(pk=job.pk).cancel()
        wait_for(lambda: PhasedJob.objects.get(pk=job.pk).state == JobState.CANCELLED, 10)
        worker.stop()
        thread.join(10)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN/NOTIFY")
def test_asking_for_stacks_gets_one_within_a_second_on_postgresql():
    job = PhasedJob.objects.create().enqueue()
    worker = WorkerLoop(burst=False, interval=0.1)
    thread = in_thread(worker)
    try:
        wait_for(lambda: PhasedJob.objects.get(pk=job.pk).state == JobState.RUNNING, 10)
        assert PhasedJob.objects.get(pk=job.pk).stack == ""  # STACK_INTERVAL is 5 s
        assert ask_for_stacks("default")
        wait_for(lambda: "first_phase" in PhasedJob.objects.get(pk=job.pk).stack, 1.5)
    finally:
        PhasedJob.objects.filter(pk=job.pk).cancel()
        wait_for(lambda: PhasedJob.objects.get(pk=job.pk).state == JobState.CANCELLED, 10)
        worker.stop()
        thread.join(10)


def test_jobs_stack_prints_it_and_refuses_a_job_that_is_not_running(capsys):
    job, thread = running_phased()
    try:
        call_command("jobs", "stack", "testapp.PhasedJob", str(job.pk))
        assert "has not written its stack yet" in capsys.readouterr().out
        lease.write_stacks([job])
        call_command("jobs", "stack", "testapp.PhasedJob", str(job.pk))
        out = capsys.readouterr().out
        assert out.startswith(f"testapp.PhasedJob#{job.pk}, attempt 1 on {job.claimed_by}, as of")
        assert "in first_phase" in out
    finally:
        finish(job, thread)
    with pytest.raises(CommandError, match=rf"testapp\.PhasedJob#{job.pk} is cancelled, not"):
        call_command("jobs", "stack", "testapp.PhasedJob", str(job.pk))
    with pytest.raises(CommandError, match=r"no testapp\.PhasedJob with id 999"):
        call_command("jobs", "stack", "testapp.PhasedJob", "999")
    other = RecordingJob.objects.create()
    with pytest.raises(CommandError, match="is new, not running"):
        call_command("jobs", "stack", "testapp.RecordingJob", str(other.pk))


def test_the_job_page_shows_the_stack_and_refresh_asks_for_it(admin_client):
    job, thread = running_phased(secret="tok-very-secret")
    url = reverse("admin:testapp_phasedjob_change", args=[job.pk])
    try:
        page = admin_client.get(url).content.decode()
        assert "Where it is now" in page
        assert "not yet written" in page
        lease.write_stacks([job])
        page = admin_client.get(url).content.decode()
        assert "in first_phase" in page
        assert "tok-very-secret" not in page
        assert "Refresh stack" in page
        refresh = admin_client.post(reverse("admin:testapp_phasedjob_stack", args=[job.pk]))
        assert refresh.status_code == 302
        messages = [str(m) for m in refresh.wsgi_request._messages]
        answers = ("Asked its worker for its stack", "Its worker writes its stack")
        assert messages[0].startswith(answers)
    finally:
        finish(job, thread)
    page = admin_client.get(url).content.decode()
    assert "- (shown while it runs)" in page
    assert "Refresh stack" not in page
    again = admin_client.post(reverse("admin:testapp_phasedjob_stack", args=[job.pk]))
    assert [str(m) for m in again.wsgi_request._messages] == [f"{job.label} is not running."]
    assert (
        admin_client.get(reverse("admin:testapp_phasedjob_stack", args=[job.pk])).status_code == 405
    )
