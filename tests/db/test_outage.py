"""Outage bookkeeping: one log line when the database goes away, one when it is back."""

import logging

from django.db import OperationalError

from jobs.db.outage import MAX_BACKOFF, Outage


def test_an_outage_is_logged_once_and_its_end_once_with_growing_backoff(caplog):
    outage = Outage("claiming")
    with caplog.at_level(logging.WARNING, logger="jobs.runtime.worker"):
        waits = [outage.failed(OperationalError("server closed the connection")) for _ in range(9)]
        outage.succeeded()
        outage.succeeded()
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0]
    assert waits[-1] == MAX_BACKOFF
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("database unavailable while claiming: server closed")
    assert "database back for claiming after" in messages[1]
    assert "(9 failed tries)" in messages[1]


def test_a_new_outage_starts_its_backoff_again():
    outage = Outage("claiming")
    outage.failed(OperationalError("down"))
    outage.failed(OperationalError("down"))
    outage.succeeded()
    assert outage.failed(OperationalError("down again")) == 0.5
