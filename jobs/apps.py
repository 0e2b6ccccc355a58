from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from jobs import checks, tally  # noqa: F401  (importing checks registers them)
        from jobs.testing import inline

        tally.connect()
        inline.connect()
