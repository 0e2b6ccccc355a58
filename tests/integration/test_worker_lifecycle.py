"""A real `runjobs` process through timeouts, shutdowns, pauses and recycling."""

import signal
import time

import pytest
from django.urls import reverse

from jobs.models import JobState
from jobs.models import Worker as WorkerRow
from jobs.runtime.worker import EXIT_INTERRUPTED, EXIT_OK, EXIT_RECYCLE
from project.instances.models import InstanceProvision
from tests.conftest import manage, start_manage, wait_for
from tests.factories import InstanceProvisionFactory, RecordingJobFactory
from tests.testapp.models import Effect, RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUIET = {"JOBS_LOG_LEVEL": "INFO"}


def started(job) -> bool:
    return Effect.objects.filter(job_id=job.pk).exists()


def finish(worker, timeout: float = 30) -> str:
    try:
        _, stderr = worker.communicate(timeout=timeout)
    finally:
        worker.kill()
    return stderr


def test_a_job_that_overruns_its_timeout_is_failed_with_its_stack_and_the_worker_recycles():
    job = RecordingJobFactory(enqueue=True, timeout=1, sleep_seconds=60)
    began = time.monotonic()
    result = manage("runjobs", "--burst", **QUIET)
    assert result.returncode == EXIT_RECYCLE, result.stderr
    assert time.monotonic() - began < 20
    job.refresh_from_db()
    assert (job.state, job.error_type) == (JobState.FAILED, "jobs.errors.JobTimeout")
    assert "ran longer than its timeout of 1 s" in job.error_message
    assert "time.sleep(self.sleep_seconds)" in job.error_traceback
    assert "recycling the worker" in result.stderr


def test_a_timed_out_job_with_attempts_left_is_retried_later():
    job = RecordingJobFactory(enqueue=True, timeout=1, sleep_seconds=60, max_attempts=2)
    assert manage("runjobs", "--burst").returncode == EXIT_RECYCLE
    job.refresh_from_db()
    assert (job.state, job.attempts, job.error_type) == (
        JobState.PENDING,
        1,
        "jobs.errors.JobTimeout",
    )


def test_sigterm_hands_back_a_job_that_outlives_the_grace_period_uncounted():
    job = RecordingJobFactory(enqueue=True, sleep_seconds=60, max_attempts=1)
    worker = start_manage("runjobs", "--grace", "0.5", **QUIET)
    wait_for(lambda: started(job))
    worker.send_signal(signal.SIGTERM)
    stderr = finish(worker)
    assert worker.returncode == EXIT_OK, stderr
    job.refresh_from_db()
    assert (job.state, job.attempts, job.claimed_by) == (JobState.PENDING, 0, "")
    assert "handed back to the queue unfinished" in stderr


def test_a_second_sigint_hands_the_job_back_at_once():
    job = RecordingJobFactory(enqueue=True, sleep_seconds=60)
    worker = start_manage("runjobs", "--grace", "60", **QUIET)
    wait_for(lambda: started(job))
    worker.send_signal(signal.SIGINT)
    time.sleep(0.3)
    began = time.monotonic()
    worker.send_signal(signal.SIGINT)
    stderr = finish(worker)
    assert worker.returncode == EXIT_INTERRUPTED, stderr
    assert time.monotonic() - began < 5
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.PENDING


def test_sigusr2_pauses_claiming_and_sigcont_resumes_it():
    worker = start_manage("runjobs", "--interval", "0.1", **QUIET)
    try:
        time.sleep(2)  # started and idle
        worker.send_signal(signal.SIGUSR2)
        time.sleep(0.5)
        job = RecordingJobFactory(enqueue=True)
        time.sleep(1.5)
        assert RecordingJob.objects.get(pk=job.pk).state == JobState.PENDING
        worker.send_signal(signal.SIGCONT)
        wait_for(lambda: RecordingJob.objects.get(pk=job.pk).state == JobState.SUCCEEDED)
        worker.send_signal(signal.SIGTERM)
        stderr = finish(worker)
    finally:
        worker.kill()
    assert "paused (SIGUSR2)" in stderr
    assert "resumed (SIGCONT)" in stderr


def test_max_jobs_recycles_the_worker_after_that_many_jobs():
    for _ in range(5):
        RecordingJobFactory(enqueue=True)
    result = manage("runjobs", "--max-jobs", "2", **QUIET)
    assert result.returncode == EXIT_RECYCLE, result.stderr
    assert Effect.objects.count() == 2
    assert "recycling the worker: it performed 2 job(s) (--max-jobs 2)" in result.stderr
    (worker,) = WorkerRow.objects.all()
    assert worker.stop_reason == "recycled: performed 2 job(s) (--max-jobs 2)"
    assert worker.memory_recycles == 0


def test_max_memory_recycles_the_worker_after_the_job_that_crossed_it():
    for _ in range(2):
        RecordingJobFactory(enqueue=True)
    result = manage("runjobs", "--threads", "1", "--max-memory", "1", **QUIET)
    assert result.returncode == EXIT_RECYCLE, result.stderr
    assert Effect.objects.count() == 1
    assert "(--max-memory 1)" in result.stderr
    (worker,) = WorkerRow.objects.all()
    assert worker.state == WorkerRow.State.STOPPED
    assert worker.memory_recycles == 1
    assert worker.stop_reason.startswith("recycled: held ")
    assert worker.stop_reason.endswith(" MB (--max-memory 1)")


def test_the_admin_finds_the_jobs_of_a_real_worker_by_its_name(admin_client):
    jobs = InstanceProvisionFactory.create_batch(2, enqueue=True)
    assert manage("runjobs", "--burst").returncode == EXIT_OK
    (worker,) = WorkerRow.objects.all()
    assert {job.claimed_by for job in InstanceProvision.objects.all()} == {worker.name}
    changelist = reverse("admin:instances_instanceprovision_changelist")
    filters = admin_client.get(changelist).context["cl"].filter_specs
    offered = next(spec for spec in filters if spec.title == "worker").lookup_choices
    assert (worker.name, worker.name) in offered
    listed = admin_client.get(changelist, {"worker": worker.name}).context["cl"].result_list
    assert sorted(job.pk for job in listed) == sorted(job.pk for job in jobs)
