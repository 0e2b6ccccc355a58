"""The admin: `JobAdmin` for job models, the workers page and the jobs dashboard.

Register a job model with `JobAdmin` (`from jobs.admin import JobAdmin`). Importing this
package registers the framework's own models (the workers, latency probes), as Django's admin
autodiscovery expects of an `admin` module.
"""

from jobs.admin import framework, pauses, workers, workflows  # noqa: F401  (registers the framework's models)
from jobs.admin.jobs import JobAdmin

__all__ = ["JobAdmin"]
