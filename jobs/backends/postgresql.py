"""PostgreSQL: the claim locks the chosen row and skips rows other workers hold.

`FOR UPDATE SKIP LOCKED` in the inner SELECT means concurrent workers each take a
different row instead of queueing behind one lock; the outer `state = 'pending'` is
re-checked by the UPDATE after the lock is granted.
"""

from jobs.backends.base import Backend


class PostgreSQLBackend(Backend):
    row_lock_clause = " FOR UPDATE SKIP LOCKED"
