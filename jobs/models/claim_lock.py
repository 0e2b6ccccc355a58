"""`ClaimLock`: the claim locks of limited job models, on databases without transaction-level
advisory locks (MariaDB and MySQL; see `jobs.db.mysql.engine`).

A limited model's claim writes its row here first, and holds the row lock until its
transaction commits or rolls back, so claims of that model run one at a time. The table
exists on every database, so that migrations are the same everywhere; PostgreSQL
(`pg_advisory_xact_lock`) and SQLite (one writer) leave it empty.
"""

from django.db import models

from jobs.db.mysql.engine import CLAIM_LOCK_TABLE


class ClaimLock(models.Model):
    name = models.CharField(
        max_length=64, primary_key=True, help_text="The job model's table whose claims it orders."
    )

    class Meta:
        db_table = CLAIM_LOCK_TABLE

    def __str__(self) -> str:
        return self.name
