"""`ENGINE: "jobs.db.mysql"`: Django's MySQL backend with the job tables' schema editor.

The connection, the driver (mysqlclient) and the introspection are Django's own; the schema
editor (`jobs.db.mysql.schema`), one feature flag and the UPDATE compiler
(`jobs.db.mysql.compiler`) differ.
"""

from django.db.backends.mysql import base, features, operations

from jobs.db.mysql.schema import DatabaseSchemaEditor

# MariaDB 10.6 and MySQL 8.0 are the first with `FOR UPDATE SKIP LOCKED`.
MINIMUM_MARIADB = (10, 6)
MINIMUM_MYSQL = (8, 0, 1)
# `GROUP_CONCAT` (and MariaDB's `JSON_ARRAYAGG`, built on it) cut their result at this many
# bytes, 1 MB by default; `Median` reads every value of a group through it
# (`jobs.db.aggregates`), so a session allows the most the server takes.
GROUP_CONCAT_MAX_LEN = 4294967295


class DatabaseFeatures(features.DatabaseFeatures):
    # Partial indexes and partial unique constraints are emulated by the schema editor, so
    # Django's checks do not warn that their conditions are ignored: they are not.
    supports_partial_indexes = True


class DatabaseOperations(operations.DatabaseOperations):
    # An UPDATE of job rows named by their key locks each row before its index entries,
    # as every other statement on them does (see the module).
    compiler_module = "jobs.db.mysql.compiler"


class DatabaseWrapper(base.DatabaseWrapper):
    SchemaEditorClass = DatabaseSchemaEditor
    features_class = DatabaseFeatures
    ops_class = DatabaseOperations

    def init_connection_state(self) -> None:
        super().init_connection_state()
        with self.cursor() as cursor:
            cursor.execute(f"SET SESSION group_concat_max_len = {GROUP_CONCAT_MAX_LEN}")
