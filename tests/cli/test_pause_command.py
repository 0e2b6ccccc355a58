"""`manage.py jobs pause|resume`, and the pauses `jobs status` shows: each bad input is
refused by a real process with one line on stderr, exit status 2, and no row written."""

import pytest

from jobs.models import QueuePause
from tests.cli.test_commands import jobs
from tests.conftest import manage
from tests.management.test_commands import assert_one_line_error

pytestmark = pytest.mark.django_db(transaction=True)


def pauses() -> list[tuple[str, str, str, str]]:
    return list(QueuePause.objects.values_list("queue", "model", "reason", "paused_by"))


def test_pause_then_pause_again_updates_the_reason_and_resume_ends_it():
    assert jobs("pause", "default", "--reason", "deploy", "--by", "ops") == (
        0,
        "paused queue default: workers stop claiming from it within a second\n",
    )
    first = QueuePause.objects.get()
    assert jobs("pause", "default", "--reason", "still deploying") == (
        0,
        "queue default was already paused: reason updated\n",
    )
    again = QueuePause.objects.get()
    assert (again.pk, again.paused_at) == (first.pk, first.paused_at)
    assert pauses() == [("default", "", "still deploying", "")]
    assert jobs("resume", "default") == (0, "resumed queue default\n")
    assert pauses() == []


def test_a_model_is_paused_by_its_label_in_any_case_and_resumed_alone():
    code, out = jobs("pause", "urgent", "--model", "testapp.urgentjob")
    assert code == 0
    assert out.startswith("paused queue urgent (model testapp.UrgentJob)")
    jobs("pause", "urgent")
    assert sorted(pauses()) == [("urgent", "", "", ""), ("urgent", "testapp.UrgentJob", "", "")]
    assert jobs("resume", "urgent", "--model", "testapp.UrgentJob")[0] == 0
    assert pauses() == [("urgent", "", "", "")]


def test_resuming_what_is_not_paused_says_so_and_changes_nothing():
    jobs("pause", "urgent", "--model", "testapp.UrgentJob")
    assert jobs("resume", "urgent") == (
        0,
        "queue urgent is not paused: nothing changed; paused in it: testapp.UrgentJob\n",
    )
    assert jobs("resume", "default") == (0, "queue default is not paused: nothing changed\n")
    assert len(pauses()) == 1


def test_status_lists_the_pauses():
    jobs("pause", "default", "--reason", "deploy in progress", "--by", "ops")
    jobs("pause", "urgent", "--model", "testapp.UrgentJob")
    out = jobs("status")[1]
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("PAUSED QUEUE"))
    rows = lines[lines.index(header) + 1 : lines.index(header) + 3]
    assert header.split() == ["PAUSED", "QUEUE", "MODEL", "SINCE", "BY", "REASON"]
    assert rows[0].split()[:2] == ["default", "all"]
    assert rows[0].endswith("ops  deploy in progress")
    assert rows[1].split()[:2] == ["urgent", "testapp.UrgentJob"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("pause", "default", "--model", "testapp.Nope"), "'testapp.Nope' is not a job model"),
        (("pause", "no queue"), "queue name 'no queue' is invalid"),
        (("pause",), "the following arguments are required: QUEUE"),
        (("pause", "default", "--reason", "x" * 501), "keep it to 500"),
        (("resume", "default", "--model", "Nope"), "'Nope' is not a job model"),
        (("resume", "a,b"), "queue name 'a,b' is invalid"),
    ],
)
def test_bad_input_is_refused_with_one_line_and_exit_2(args, fragment):
    QueuePause.objects.pause("default", reason="kept")
    result = manage("jobs", *args)
    assert_one_line_error(result, 2, fragment)
    assert result.stdout == ""
    assert pauses() == [("default", "", "kept", "")]


def test_a_real_process_pauses_and_resumes():
    result = manage("jobs", "pause", "default", "--reason", "from a shell")
    assert result.returncode == 0, result.stderr
    assert pauses() == [("default", "", "from a shell", "")]
    result = manage("jobs", "resume", "default")
    assert (result.returncode, result.stdout) == (0, "resumed queue default\n")
    result = manage("jobs", "resume", "default")
    assert (result.returncode, result.stdout) == (
        0,
        "queue default is not paused: nothing changed\n",
    )
