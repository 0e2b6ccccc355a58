"""A factory-boy base for job models: `MyJobFactory(enqueue=True)` creates and enqueues.

The one module of `jobs` that needs factory_boy, so projects that do not use it never
import it.
"""

from typing import Any

try:
    import factory
    from factory.django import DjangoModelFactory
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "jobs.testing.factories needs factory_boy: `pip install factory-boy` in your test "
        "environment (the rest of jobs.testing does not)"
    ) from error

from jobs.models import Job


class JobFactory(DjangoModelFactory):
    """Base for a job model's factory; set `Meta.model` and the model's own fields.

    Rows are created `new`, as `Model.objects.create()` would; `enqueue=True` then enqueues
    each, and `enqueue__delay=60`, `enqueue__priority=5`, ... pass `enqueue()`'s arguments
    (and imply `enqueue=True`).
    """

    class Meta:
        abstract = True
        skip_postgeneration_save = True

    @factory.post_generation
    def enqueue(obj: Job, create: bool, extracted: bool | None, **kwargs: Any) -> None:
        if create and (extracted or (extracted is None and kwargs)):
            obj.enqueue(**kwargs)
