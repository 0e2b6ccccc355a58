"""factory-boy factories for job and domain rows; `enqueue=True` queues a job once created."""

import factory

from jobs.testing.factories import JobFactory
from project.instances.models import Instance, InstanceProvision
from tests.testapp.models import RecordingJob, StepJob, UrgentJob


class RecordingJobFactory(JobFactory):
    class Meta:
        model = RecordingJob

    label_text = factory.Sequence(lambda n: f"job-{n}")


class UrgentJobFactory(JobFactory):
    class Meta:
        model = UrgentJob


class InstanceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Instance

    name = factory.Sequence(lambda n: f"web-{n}")


class InstanceProvisionFactory(JobFactory):
    class Meta:
        model = InstanceProvision

    instance = factory.SubFactory(InstanceFactory)


class StepJobFactory(JobFactory):
    class Meta:
        model = StepJob

    api_token = factory.Sequence(lambda n: f"tok-secret-{n:04d}")
