from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs import checks, conf  # noqa: F401  (importing checks registers them)
        from jobs.monitoring import tally

        tally.connect()
        if conf.run_inline():
            _follow_inline_setting()
        setting_changed.connect(_setting_changed, dispatch_uid="jobs.apps")


def _setting_changed(setting: str, **kwargs: Any) -> None:
    """`override_settings(JOBS_RUN_INLINE=...)` in a test turns inline mode on or off."""
    if setting == "JOBS_RUN_INLINE":
        _follow_inline_setting()


def _follow_inline_setting() -> None:
    """Inline mode is test tooling: imported only by a process that turns it on."""
    from jobs.testing import inline

    inline.follow_setting()
