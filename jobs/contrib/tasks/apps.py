from django.apps import AppConfig


class TasksConfig(AppConfig):
    """Django's Tasks API backed by job rows: an app of its own, so projects without it
    carry neither its table in their admin nor `django-tasks` among their requirements."""

    name = "jobs.contrib.tasks"
    label = "jobs_tasks"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"
