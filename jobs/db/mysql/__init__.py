"""MariaDB and MySQL: a Django database backend for job tables, and the claim engine.

`ENGINE: "jobs.db.mysql"` is Django's MySQL backend (mysqlclient) whose schema editor
gives job tables what the database cannot say directly: MariaDB and MySQL have no partial
indexes, so a partial index on the `state` column becomes an index led by `state` (the
pending rows still sit together, in claim order), and a partial unique constraint becomes
a unique index over its columns and an invisible generated column that is 1 where the
condition holds and NULL elsewhere (a NULL never collides): `unique_on` and the concurrency
slots are refused by the database itself, as on PostgreSQL. `jobs.db.mysql.engine` claims
and records outcomes without `UPDATE ... RETURNING`, which neither database has, and
`jobs.db.mysql.compiler` sends an `UPDATE` of job rows named by their key through the
primary key, so that every statement locks a row before its index entries.
"""
