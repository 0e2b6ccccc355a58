"""Nineteen job models that never get a row (`bench.settings_many`): what serving them costs."""
