"""Take over `jobs_taskjob`, the table the jobs app created (jobs 0005 to 0007).

A state operation only: the table, its indexes and its rows are already there, created by the
jobs app's migrations, which this one follows.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("jobs", "0008_taskjob_moves_to_jobs_contrib_tasks"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="TaskJob",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("new", "New"),
                                    ("pending", "Pending"),
                                    ("running", "Running"),
                                    ("succeeded", "Succeeded"),
                                    ("failed", "Failed"),
                                    ("cancelled", "Cancelled"),
                                ],
                                default="new",
                                editable=False,
                                max_length=16,
                            ),
                        ),
                        ("queue", models.CharField(default="default", max_length=100)),
                        (
                            "priority",
                            models.SmallIntegerField(
                                default=0, help_text="Higher runs first (-100 to 100)."
                            ),
                        ),
                        ("max_attempts", models.PositiveSmallIntegerField(default=1)),
                        (
                            "timeout",
                            models.PositiveIntegerField(
                                blank=True,
                                default=None,
                                help_text="Seconds an attempt may run before it is stopped and counted as failed.",
                                null=True,
                            ),
                        ),
                        ("attempts", models.PositiveSmallIntegerField(default=0, editable=False)),
                        (
                            "requested_at",
                            models.DateTimeField(blank=True, editable=False, null=True),
                        ),
                        (
                            "run_at",
                            models.DateTimeField(
                                blank=True,
                                editable=False,
                                help_text="Not to be started before this time.",
                                null=True,
                            ),
                        ),
                        ("started_at", models.DateTimeField(blank=True, editable=False, null=True)),
                        (
                            "finished_at",
                            models.DateTimeField(blank=True, editable=False, null=True),
                        ),
                        (
                            "claimed_by",
                            models.CharField(
                                blank=True,
                                editable=False,
                                help_text="host:pid of the process that claimed this attempt.",
                                max_length=255,
                            ),
                        ),
                        (
                            "lease_expires_at",
                            models.DateTimeField(
                                blank=True,
                                editable=False,
                                help_text="A running job whose worker stops renewing this is rescued after it.",
                                null=True,
                            ),
                        ),
                        (
                            "error_type",
                            models.CharField(blank=True, editable=False, max_length=255),
                        ),
                        ("error_message", models.TextField(blank=True, editable=False)),
                        ("error_traceback", models.TextField(blank=True, editable=False)),
                        (
                            "error_history",
                            models.JSONField(
                                blank=True,
                                default=list,
                                editable=False,
                                help_text="The last failures, oldest first: attempt, time, worker, error, log.",
                            ),
                        ),
                        (
                            "progress_done",
                            models.PositiveIntegerField(blank=True, editable=False, null=True),
                        ),
                        (
                            "progress_total",
                            models.PositiveIntegerField(blank=True, editable=False, null=True),
                        ),
                        (
                            "log",
                            models.TextField(
                                blank=True,
                                editable=False,
                                help_text="What the latest attempt logged, newest kept.",
                            ),
                        ),
                        (
                            "cancel_requested_at",
                            models.DateTimeField(
                                blank=True,
                                editable=False,
                                help_text="Someone asked this running job to stop; it stops if it checks.",
                                null=True,
                            ),
                        ),
                        (
                            "task_path",
                            models.CharField(
                                editable=False,
                                help_text="module.function of the @task.",
                                max_length=300,
                            ),
                        ),
                        ("args", models.JSONField(blank=True, default=list, editable=False)),
                        ("kwargs", models.JSONField(blank=True, default=dict, editable=False)),
                        (
                            "backend",
                            models.CharField(
                                default="default",
                                editable=False,
                                help_text="The TASKS alias.",
                                max_length=100,
                            ),
                        ),
                        ("return_value", models.JSONField(blank=True, editable=False, null=True)),
                    ],
                    options={
                        "verbose_name": "task",
                        "db_table": "jobs_taskjob",
                        "indexes": [
                            models.Index(
                                condition=models.Q(("state", "pending")),
                                fields=["queue", "-priority", "run_at", "id"],
                                name="jobs_taskjob_c01a45b6_pend",
                            ),
                            models.Index(
                                condition=models.Q(("state", "running")),
                                fields=["lease_expires_at"],
                                name="jobs_taskjob_c01a45b6_run",
                            ),
                            models.Index(
                                condition=models.Q(("state", "pending")),
                                fields=["-priority", "run_at", "id"],
                                name="jobs_taskjob_c01a45b6_any",
                            ),
                            models.Index(
                                condition=models.Q(("state", "pending")),
                                fields=["run_at"],
                                name="jobs_taskjob_c01a45b6_due",
                            ),
                            models.Index(
                                condition=models.Q(("state", "new")),
                                fields=["queue"],
                                name="jobs_taskjob_c01a45b6_new",
                            ),
                            models.Index(
                                condition=models.Q(
                                    ("state__in", ("succeeded", "failed", "cancelled"))
                                ),
                                fields=["state", "finished_at"],
                                name="jobs_taskjob_c01a45b6_fin",
                            ),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
