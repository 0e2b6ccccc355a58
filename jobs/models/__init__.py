"""The models: the abstract `Job` every job model subclasses, and the framework's own rows.

    from jobs.models import Job

Importing this package needs Django's app registry (as any models module does); the job
model's lifecycle states are `JobState`, its queryset verbs `JobQuerySet`.
"""

from jobs.models.batch import Batch
from jobs.models.claim_lock import ClaimLock
from jobs.models.dependency import Dependency
from jobs.models.iterative import IterativeJob
from jobs.models.job import Job
from jobs.models.metric_tally import MetricTally
from jobs.models.pause import QueuePause
from jobs.models.probe import LatencyProbe
from jobs.models.queryset import JobQuerySet
from jobs.models.scheduled_run import ScheduledRun
from jobs.models.worker import Worker
from jobs.states import JobState

__all__ = [
    "Batch",
    "ClaimLock",
    "Dependency",
    "IterativeJob",
    "Job",
    "JobQuerySet",
    "JobState",
    "LatencyProbe",
    "MetricTally",
    "QueuePause",
    "ScheduledRun",
    "Worker",
]
