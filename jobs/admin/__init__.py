"""The admin: `JobAdmin` for job models, the workers page and the jobs dashboard.

Register a job model with `JobAdmin` (`from jobs.admin import JobAdmin`); the framework's own
models are registered here.
"""

from jobs.admin.jobs import JobAdmin
from jobs.admin.workers import WorkerAdmin

__all__ = ["JobAdmin", "WorkerAdmin"]
