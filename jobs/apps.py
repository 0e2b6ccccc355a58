from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs import checks  # noqa: F401  (importing checks registers them)
        from jobs.monitoring import tally
        from jobs.testing import inline

        tally.connect()
        inline.connect()
