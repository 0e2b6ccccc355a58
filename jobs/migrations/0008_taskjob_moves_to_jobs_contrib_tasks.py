"""`TaskJob` moves to the `jobs.contrib.tasks` app (label `jobs_tasks`).

Only Django's record of the model moves: the table `jobs_taskjob` and its rows stay where they
are, and `jobs_tasks`' first migration takes them over. In a project without
`jobs.contrib.tasks` the table is left unused.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0007_new_rows_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="TaskJob")],
            database_operations=[],
        ),
    ]
