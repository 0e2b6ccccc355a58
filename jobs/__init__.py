"""Background jobs as Django models: enqueue in your transaction, run under a row lock."""
