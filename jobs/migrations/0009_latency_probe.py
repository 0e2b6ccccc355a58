"""The latency-probe job model was called `Heartbeat`, a name the worker's sign of life also
had: the model, its table, its indexes and its schedule rows take the name `LatencyProbe`.

The clock's slots keep their continuity: a probe's slot rows are renamed from
`heartbeat:<queue>` to `probe:<queue>` rather than left behind, so the first clock tick after
the upgrade does not enqueue a probe for a minute that already had one.
"""

from django.db import migrations
from django.db.models import Value
from django.db.models.functions import Concat, Substr

OLD_PREFIX, NEW_PREFIX = "heartbeat:", "probe:"


def rename_probe_slots(apps, schema_editor):
    rows = apps.get_model("jobs", "ScheduledRun").objects.filter(schedule__startswith=OLD_PREFIX)
    rows.update(
        schedule=Concat(Value(NEW_PREFIX), Substr("schedule", len(OLD_PREFIX) + 1)),
        job_model="jobs.LatencyProbe",
    )


def restore_heartbeat_slots(apps, schema_editor):
    rows = apps.get_model("jobs", "ScheduledRun").objects.filter(schedule__startswith=NEW_PREFIX)
    rows.update(
        schedule=Concat(Value(OLD_PREFIX), Substr("schedule", len(NEW_PREFIX) + 1)),
        job_model="jobs.Heartbeat",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0008_taskjob_moves_to_jobs_contrib_tasks"),
    ]

    operations = [
        migrations.RenameModel(old_name="Heartbeat", new_name="LatencyProbe"),
        *(
            migrations.RenameIndex(
                model_name="latencyprobe",
                old_name=f"jobs_heartbeat_4951d99f_{suffix}",
                new_name=f"jobs_latencyprob_50545977_{suffix}",
            )
            for suffix in ("pend", "run", "any", "due", "new", "fin")
        ),
        migrations.RunPython(rename_probe_slots, restore_heartbeat_slots),
    ]
