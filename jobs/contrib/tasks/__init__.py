"""Django's Tasks API on job rows: `@task` functions enqueued as `TaskJob` rows, run by
`runjobs`. Optional: add `"jobs.contrib.tasks"` to `INSTALLED_APPS` and name
`jobs.contrib.tasks.backend.DatabaseBackend` in `TASKS`."""
