"""The `manage.py jobs` subcommands, one module each; the command itself only wires them up.

Every subcommand goes through the lifecycle verbs (`enqueue()`, `run()`, `requeue()`,
`cancel()`, `retry_now()`), so the shell can do nothing the admin or the API could not.
"""
