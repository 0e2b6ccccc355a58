"""Functions decorated as tasks for `jobs.contrib.tasks.backend`: found by the worker's discovery of
installed apps' `tasks` modules, as a project's would be."""

import asyncio

from jobs.contrib.tasks.api import TaskContext, task
from tests.testapp.models import Effect


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(priority=10)
def shout(text: str, *, times: int = 1) -> dict:
    return {"text": text.upper() * times, "parts": [text] * times}


@task()
def divide(a: int, b: int) -> float:
    return a / b


@task()
def unstorable() -> object:
    return {1, 2, 3}


@task(takes_context=True)
def where_am_i(context: TaskContext, note: str) -> dict:
    Effect.objects.create(job_model="task", job_id=0, attempt=context.attempt, worker=note)
    return {"id": context.task_result.id, "attempt": context.attempt}


@task()
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"
