"""A module a forged TaskJob row names (`tests.testapp.import_bomb.run`): a worker that
imported what a row says would raise this, instead of refusing the row."""

raise RuntimeError("tests.testapp.import_bomb was imported")
