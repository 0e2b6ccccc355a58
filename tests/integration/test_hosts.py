"""Three hosts against one PostgreSQL: cuts and wrong clocks lose no job and start none twice.

Each host is a network namespace of this machine (`tests/hosts.py`) whose one way to the
database is its veth, through a relay to 127.0.0.1. One real `runjobs` per host (4 threads,
a 3 s lease) drains 240 `TimedJob`s, most 0.1 to 0.4 s, one in twelve 4 to 6 s (longer
than a lease, so its lease must be renewed; claimed first, and first again when rescued, so
a rescued one runs again at once). Each scenario disrupts host 1, the cuts 2 s into the
work, with jobs in hand:

- a full partition (every packet in and out dropped) for 8 s, longer than two leases, then
  healed;
- a one-way cut for 4 s, a little longer than a lease: the database's replies to host 1 are
  dropped while its statements still arrive and commit, and its replies take 0.2 s, so a
  claim's COMMIT is often in flight when the cut starts (a claim whose answer comes back
  only after the heal, while the attempt that replaced it runs), then healed;
- its wall clock 10 s ahead, then 10 s behind (libfaketime), for the whole run.

What each scenario asserts, from two records that do not depend on any host's clock:
- executions, from `TimedJob` itself: a JSON line at the start and at the end of each
  `perform()`, on the machine's monotonic clock (a local file, since the host may be cut);
- leases, from the database: a trigger logs every claim, every renewal (`lease_expires_at`
  written) and every release (an outcome or a rescue) of a `TimedJob` row, at the
  database's `clock_timestamp()`. An attempt's lease is alive for `JOBS_LEASE_SECONDS`
  after its last logged claim or renewal (less a margin), whatever value the worker wrote:
  that value is what a wrong clock gets wrong.

The verdict: every job succeeded (0 lost); no claim was performed twice, and no claim of a
job repeats an earlier one's (attempt, claimant), which the fence could not tell apart; every
rescue came after the rescued claim's lease had run out (every duplicate execution is
explained by an attempt whose lease ran out); no two executions of one job overlap unless
the one that started first had lost its lease when the second started; and for the full
partition, host 1's worker reported the outage; every worker exits 0 on SIGTERM at the end.
Every failure is listed, not just the first,
with the figures printed before the verdict. It kills nothing; it cuts host 1's network and
moves its clock. Needs root, iproute2, nftables and faketime (skipped, saying so, without
them) and PostgreSQL.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection

from jobs.models import JobState
from jobs.models import Worker as WorkerRow
from jobs.models.queryset import WORKER_LOST
from tests import hosts
from tests.conftest import REPO, database_url, manage_env, needs_postgresql, wait_for
from tests.testapp.models import EXECUTION_LOG, TimedJob

pytestmark = [
    pytest.mark.integration,
    needs_postgresql("workers on other hosts reach it over TCP"),
    pytest.mark.django_db(transaction=True),
]

HOSTS = 3
JOBS = 240
LONG_EVERY = 12  # one job in twelve outlives a lease
THREADS = 4
LEASE_SECONDS = 3.0
CUT_SECONDS = 8.0
CUT_AFTER_SECONDS = 2.0  # of work, so host 1 has jobs in hand
CLOCK_OFFSET_SECONDS = 10
# For the one-way cut, host 1's replies take this long: a transaction's COMMIT is then often
# in flight when the cut starts, so a claim commits and its worker never hears of it; and it
# is cut only a little longer than a lease, so it hears of it while the rescued attempt runs.
REPLY_DELAY_SECONDS = 0.2
ONE_WAY_CUT_SECONDS = 4.0
# A worker computes a lease before its claim's transaction makes its round trips (BEGIN, the
# outcomes, the claim), so on a slow link a lease is written up to that much after it began.
ROUND_TRIPS_BEFORE_A_LEASE = 3
DEADLINE_SECONDS = 60
# A logged renewal is a little later than the worker's own "now" it extends from, and the
# two clocks are read once: a start this close to a lease's end is not called a violation.
LEASE_MARGIN_SECONDS = 0.25
WORKER_ENV = {"JOBS_LEASE_SECONDS": f"{LEASE_SECONDS:g}", "JOBS_LOG_LEVEL": "WARNING"}

LEASE_LOG_SQL = """
CREATE TABLE hosts_lease_log (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    claimed_by text NOT NULL,
    kind text NOT NULL,
    state text NOT NULL,
    error_type text NOT NULL,
    lease_expires_at timestamptz,
    logged_at timestamptz NOT NULL
);
CREATE FUNCTION hosts_log_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state <> 'running' THEN  -- an outcome, or a rescue: this claim is over
        INSERT INTO hosts_lease_log VALUES (OLD.id, OLD.attempts, OLD.claimed_by, 'release',
            NEW.state, NEW.error_type, NEW.lease_expires_at, clock_timestamp());
    ELSIF OLD.state = 'running' AND (OLD.attempts, OLD.claimed_by)
                                    = (NEW.attempts, NEW.claimed_by) THEN
        INSERT INTO hosts_lease_log VALUES (NEW.id, NEW.attempts, NEW.claimed_by, 'renewal',
            NEW.state, '', NEW.lease_expires_at, clock_timestamp());
    ELSE
        INSERT INTO hosts_lease_log VALUES (NEW.id, NEW.attempts, NEW.claimed_by, 'claim',
            NEW.state, '', NEW.lease_expires_at, clock_timestamp());
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER hosts_log_lease AFTER UPDATE ON testapp_timedjob FOR EACH ROW
    WHEN ((OLD.state = 'running') <> (NEW.state = 'running')
          OR (NEW.state = 'running' AND (OLD.attempts, OLD.claimed_by, OLD.lease_expires_at)
              IS DISTINCT FROM (NEW.attempts, NEW.claimed_by, NEW.lease_expires_at)))
    EXECUTE FUNCTION hosts_log_lease();
"""
DROP_LEASE_LOG_SQL = """
DROP TRIGGER IF EXISTS hosts_log_lease ON testapp_timedjob;
DROP FUNCTION IF EXISTS hosts_log_lease();
DROP TABLE IF EXISTS hosts_lease_log;
"""


@pytest.fixture(scope="module")
def network():
    """Three hosts for the whole module (made once: about a second), removed at its end."""
    settings = connection.settings_dict
    try:
        with hosts.network(
            HOSTS,
            database_host=settings["HOST"] or "127.0.0.1",
            database_port=int(settings["PORT"] or 5432),
        ) as made:
            yield made
    except hosts.HostsUnavailable as unavailable:
        pytest.skip(f"no hosts: {unavailable}")


@pytest.fixture
def lease_log():
    with connection.cursor() as cursor:
        cursor.execute(DROP_LEASE_LOG_SQL + LEASE_LOG_SQL)
    yield
    with connection.cursor() as cursor:
        cursor.execute(DROP_LEASE_LOG_SQL)


def test_a_host_partitioned_for_longer_than_two_leases_then_healed(
    network, lease_log, tmp_path, capsys
):
    report = drain(network, tmp_path, "partition", cut="both")
    problems = report.problems()
    if not report.outage_reported:
        problems.append(
            "host1's worker never reported the outage (no 'database unavailable' in its log) "
            f"during an {CUT_SECONDS:g} s partition"
        )
    verdict(report, problems, capsys)


def test_a_host_whose_replies_are_cut_one_way_then_healed(network, lease_log, tmp_path, capsys):
    report = drain(
        network,
        tmp_path,
        "one-way cut (replies to host1 dropped)",
        cut="in",
        cut_seconds=ONE_WAY_CUT_SECONDS,
        reply_delay=REPLY_DELAY_SECONDS,
    )
    verdict(report, report.problems(), capsys)


@pytest.mark.parametrize("offset", [CLOCK_OFFSET_SECONDS, -CLOCK_OFFSET_SECONDS])
def test_a_host_whose_clock_is_ten_seconds_off(network, lease_log, tmp_path, capsys, offset):
    try:
        hosts.faketime_library()
    except hosts.HostsUnavailable as unavailable:
        pytest.skip(str(unavailable))
    wall, monotonic = network[0].clock_shift(offset)
    assert abs(wall - offset) < 1, f"libfaketime did not move the wall clock {offset:+} s: {wall}"
    assert abs(monotonic) < 1, f"libfaketime moved the monotonic clock too: {monotonic:+.1f} s"
    report = drain(network, tmp_path, f"host1's clock {offset:+d} s", clock_offset=offset)
    verdict(report, report.problems(), capsys)


def verdict(report: Report, problems: list[str], capsys) -> None:
    """Print the scenario's figures (CI's output keeps them), then fail on every problem."""
    with capsys.disabled():
        print(f"\nhosts, {report.scenario}: {json.dumps(report.figures)}")
    assert not problems, report.explain(problems)


@dataclass
class Claim:
    """One claim of a job, from the lease log: when its lease was written, when it ended."""

    job: int
    attempt: int
    worker: str
    leases: list[float]  # the claim, then each renewal
    released: float | None = None  # the row left `running` (outcome or rescue)
    released_to: str = ""
    error_type: str = ""  # of the move that released it: WORKER_LOST for a rescue

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.job, self.attempt, self.worker)

    def alive(self, at: float, margin: float = LEASE_MARGIN_SECONDS) -> bool:
        """Whether this claim's lease was alive at `at`: written less than a lease (less the
        margin) before."""
        window = LEASE_SECONDS - margin
        return any(written <= at < written + window for written in self.leases)

    def since_lease(self, at: float) -> str:
        written = [moment for moment in self.leases if moment <= at]
        return f"{at - max(written):.2f} s" if written else "(before its claim)"


@dataclass
class Execution:
    """One `perform()`: the claim it ran under, where, and when."""

    job: int
    attempt: int
    worker: str
    host: str
    start: float
    end: float | None  # None: it never returned
    claim: Claim | None = None

    def overlap(self, other: Execution) -> float:
        end = min(self.end or float("inf"), other.end or float("inf"))
        return end - max(self.start, other.start)


@dataclass
class Report:
    """What happened in one scenario, and what of it breaks a promise."""

    scenario: str
    executions: list[Execution]
    claims: dict[int, list[Claim]]  # per job, in order
    renewals: int
    not_succeeded: dict[str, int]
    hosts_of: dict[str, str]  # worker name -> host
    logs: dict[str, str]  # host -> its worker's log
    exits: dict[str, int | None]
    died: list[str]
    seconds: float
    cut: tuple[float, float] | None = None
    lease_margin: float = LEASE_MARGIN_SECONDS
    figures: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for execution in self.executions:
            matching = [
                claim
                for claim in self.claims.get(execution.job, [])
                if (claim.attempt, claim.worker) == (execution.attempt, execution.worker)
                and claim.leases[0] <= execution.start
            ]
            execution.claim = matching[-1] if matching else None

    @property
    def outage_reported(self) -> bool:
        return "database unavailable" in self.logs.get("host1", "")

    def host(self, claim: Claim) -> str:
        return self.hosts_of.get(claim.worker, claim.worker or "?")

    def problems(self) -> list[str]:
        problems = []
        if self.not_succeeded:
            problems.append(f"lost: jobs not succeeded at the end, by state: {self.not_succeeded}")
        unlogged = [run for run in self.executions if run.claim is None]
        if unlogged:
            problems.append(
                f"{len(unlogged)} executions of claims the lease log never saw, e.g. "
                f"job {unlogged[0].job} attempt {unlogged[0].attempt} on {unlogged[0].host}"
            )
        if not self.renewals and any(
            run.end and run.end - run.start > LEASE_SECONDS for run in self.executions
        ):
            problems.append(
                "no lease renewal was logged, though jobs outlived a lease: the lease is no "
                "longer renewed on the job's row; update LEASE_LOG_SQL to where it is kept"
            )
        runs_of: dict[int, int] = defaultdict(int)
        for run in self.executions:
            if run.claim is not None:
                runs_of[id(run.claim)] += 1
        twice = [run for run in self.executions if run.claim and runs_of[id(run.claim)] > 1]
        if twice:
            problems.append(
                f"{len(twice)} executions of a claim performed more than once, e.g. job "
                f"{twice[0].job} attempt {twice[0].attempt}"
            )
        ambiguous = [
            f"job {job} attempt {claim.attempt} by {self.host(claim)}"
            for job, claims in self.claims.items()
            for index, claim in enumerate(claims)
            if any(other.key == claim.key for other in claims[:index])
        ]
        if ambiguous:
            problems.append(
                f"{len(ambiguous)} claims repeat an earlier claim's (attempt, claimant) of the "
                "same job, so the fence cannot tell the stale attempt from the new one, e.g. "
                + "; ".join(ambiguous[:5])
            )
        rescued_alive = [
            f"job {claim.job} attempt {claim.attempt} on {self.host(claim)}: moved to "
            f"{claim.released_to} {claim.since_lease(claim.released)} after its lease was "
            "last written"
            for claim in self.rescues()
            if claim.alive(claim.released, self.lease_margin)
        ]
        if rescued_alive:
            problems.append(
                f"{len(rescued_alive)} rescues of a claim whose lease was alive (duplicates "
                "not explained by a lease that ran out), e.g.:\n  " + "\n  ".join(rescued_alive[:8])
            )
        overlaps = self.overlaps_while_alive()
        if overlaps:
            problems.append(
                f"{len(overlaps)} executions started while another execution of the same job "
                "was running with its lease alive, e.g.:\n  " + "\n  ".join(overlaps[:8])
            )
        failures = self.failures()
        if failures:
            kinds = sorted({f"{claim.error_type} ({claim.released_to})" for claim in failures})
            problems.append(f"{len(failures)} attempts ended in an error: {kinds}")
        if self.died:
            problems.append(f"workers died during the run: {self.died}")
        unclean = {host: code for host, code in self.exits.items() if code != 0}
        if unclean:
            problems.append(f"workers that did not exit 0 on SIGTERM (None: killed): {unclean}")
        tracebacks = [host for host, log in self.logs.items() if "Traceback" in log]
        if tracebacks:
            problems.append(f"a traceback in the log of {tracebacks}")
        return problems

    def rescues(self) -> list[Claim]:
        """Claims another worker took back (`jobs.WorkerLost`) because their lease ran out."""
        return [
            claim
            for claim in self.released()
            if claim.error_type == WORKER_LOST and claim.released_to != JobState.SUCCEEDED
        ]

    def failures(self) -> list[Claim]:
        """Claims that ended in an error of their own: a TimedJob never raises one."""
        return [
            claim
            for claim in self.released()
            if claim.error_type != WORKER_LOST and claim.released_to != JobState.SUCCEEDED
        ]

    def released(self) -> list[Claim]:
        return [
            claim
            for claims in self.claims.values()
            for claim in claims
            if claim.released is not None
        ]

    def overlaps_while_alive(self) -> list[str]:
        found = []
        for first, second in self.overlapping_pairs():
            if first.claim is None or first.claim.alive(second.start, self.lease_margin):
                found.append(
                    f"job {first.job}: attempt {second.attempt} on {second.host} started "
                    f"{first.claim.since_lease(second.start) if first.claim else '?'} after "
                    f"attempt {first.attempt} on {first.host} last wrote its lease, "
                    f"overlapping it {first.overlap(second):.2f} s"
                )
        return found

    def overlapping_pairs(self) -> list[tuple[Execution, Execution]]:
        pairs = []
        for runs in self.runs_by_job().values():
            for index, first in enumerate(runs):
                pairs.extend(
                    (first, second) for second in runs[index + 1 :] if first.overlap(second) > 0
                )
        return pairs

    def runs_by_job(self) -> dict[int, list[Execution]]:
        by_job: dict[int, list[Execution]] = defaultdict(list)
        for execution in sorted(self.executions, key=lambda run: run.start):
            by_job[execution.job].append(execution)
        return by_job

    def measure(self) -> dict:
        """The figures docs/guarantees.md shows for a scenario."""
        pairs = self.overlapping_pairs()
        late = [
            run
            for run in self.executions
            if run.claim
            and (
                not run.claim.alive(run.start, self.lease_margin)
                or (run.claim.released is not None and run.claim.released < run.start)
            )
        ]
        figures = {
            "jobs": JOBS,
            "executions": len(self.executions),
            "duplicates": len(self.executions) - len({run.job for run in self.executions}),
            "claims": sum(len(claims) for claims in self.claims.values()),
            "rescues": len(self.rescues()),
            "failed_attempts": len(self.failures()),
            "renewals": self.renewals,
            "overlaps": len(pairs),
            "overlaps_while_alive": len(self.overlaps_while_alive()),
            "longest_overlap": round(max((a.overlap(b) for a, b in pairs), default=0.0), 2),
            "started_after_claim_gone": len(late),
            "lost_claim_warnings": sum(log.count("lost its claim") for log in self.logs.values()),
            "outage_reported": self.outage_reported,
            "seconds": round(self.seconds, 1),
            "exits": self.exits,
        }
        if self.cut:
            started, healed = self.cut
            rescued = [
                claim.released - started
                for claim in self.rescues()
                if self.host(claim) == "host1" and claim.released > started
            ]
            back = [run.start - healed for run in self.executions if run.host == "host1"]
            figures["first_rescue_after_cut"] = round(min(rescued), 2) if rescued else None
            back_after = [moment for moment in back if moment > 0]
            figures["host1_back_after_heal"] = round(min(back_after), 2) if back_after else None
        self.figures = figures
        return figures

    def explain(self, problems: list[str]) -> str:
        tails = "\n".join(
            f"--- {host} worker log (end) ---\n{log[-1500:]}" for host, log in self.logs.items()
        )
        return f"{self.scenario}:\n" + "\n".join(problems) + f"\n{self.figures}\n{tails}"


def drain(
    network: list[hosts.Host],
    tmp_path: Path,
    scenario: str,
    *,
    cut: str | None = None,
    cut_seconds: float = CUT_SECONDS,
    reply_delay: float = 0,
    clock_offset: float = 0,
) -> Report:
    """Run one scenario to its end (every job finished, or the deadline) and report it.

    With `cut`, host 1 is cut CUT_AFTER_SECONDS into the work, with jobs in hand, for
    `cut_seconds`; with `reply_delay`, what the database sends it takes that long.
    """
    chance = random.Random(f"{scenario}-20261206")
    TimedJob.objects.bulk_enqueue(  # the long ones first, and first again when rescued
        TimedJob(seconds=chance.uniform(4, 6), priority=10)
        if n % LONG_EVERY == 0
        else TimedJob(seconds=chance.uniform(0.1, 0.4))
        for n in range(JOBS)
    )
    executions_file = tmp_path / "executions.jsonl"
    workers = {}
    for host in network:
        offset = clock_offset if host.index == 1 else 0
        workers[host.name] = start_worker(host, executions_file, tmp_path, offset)
    began = time.monotonic()
    cut_window = None
    network[0].delay_replies(reply_delay)
    try:
        wait_for(lambda: WorkerRow.objects.filter(stopped_at=None).count() >= HOSTS, timeout=30)
        if cut:
            started_work = time.monotonic()
            wait_for(lambda: _running_on(workers["host1"].pid) > 0, timeout=20)
            time.sleep(max(0.0, CUT_AFTER_SECONDS - (time.monotonic() - started_work)))
            cut_started = time.monotonic()
            network[0].cut(cut)
            time.sleep(cut_seconds)
            network[0].heal()
            cut_window = (cut_started, time.monotonic())
        deadline = began + DEADLINE_SECONDS
        while (
            time.monotonic() < deadline
            and TimedJob.objects.filter(state__in=[JobState.PENDING, JobState.RUNNING]).exists()
        ):
            time.sleep(0.2)
    finally:
        network[0].heal()
        network[0].delay_replies(0)
        seconds = time.monotonic() - began
        died = [name for name, process in workers.items() if process.poll() is not None]
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        exits = {}
        for name, process in workers.items():
            try:
                exits[name] = process.wait(timeout=hosts.STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                exits[name] = None
    claims, renewals = read_lease_log()
    report = Report(
        scenario=scenario,
        executions=read_executions(executions_file),
        claims=claims,
        renewals=renewals,
        not_succeeded={
            state: count
            for state in JobState.values
            if state != JobState.SUCCEEDED
            and (count := TimedJob.objects.filter(state=state).count())
        },
        hosts_of={worker_name(process.pid): name for name, process in workers.items()},
        logs={name: (tmp_path / f"{name}.log").read_text() for name in workers},
        exits=exits,
        died=died,
        seconds=seconds,
        cut=cut_window,
        lease_margin=LEASE_MARGIN_SECONDS + ROUND_TRIPS_BEFORE_A_LEASE * reply_delay,
    )
    report.measure()
    return report


def start_worker(
    host: hosts.Host, executions: Path, tmp_path: Path, clock_offset: float
) -> subprocess.Popen:
    """One `runjobs` inside `host`: 4 threads, a 3 s lease, its log in tmp_path/<host>.log."""
    env = manage_env(
        **WORKER_ENV,
        DATABASE_URL=host.database_url(database_url()),
        TESTS_HOST=host.name,
        **{EXECUTION_LOG: str(executions)},
    )
    argv = [sys.executable, "manage.py", "runjobs", "--threads", str(THREADS)]
    argv += ["--interval", "0.2", "--grace", "5"]
    with (tmp_path / f"{host.name}.log").open("w") as log:  # the worker keeps its own copy
        return host.popen(
            argv, env=env, clock_offset=clock_offset, cwd=REPO, stdout=log, stderr=log
        )


def worker_name(pid: int) -> str:
    """`claimed_by` of the worker with this pid: namespaces share this machine's hostname."""
    return f"{socket.gethostname()}:{pid}"


def _running_on(pid: int) -> int:
    return TimedJob.objects.filter(state=JobState.RUNNING, claimed_by=worker_name(pid)).count()


def read_executions(path: Path) -> list[Execution]:
    """Pair each execution's start and end lines (an execution with no end never returned)."""
    starts, ends = {}, {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            (starts if record["event"] == "start" else ends)[record["execution"]] = record
    return [
        Execution(
            job=record["job"],
            attempt=record["attempt"],
            worker=record["worker"],
            host=record["host"],
            start=record["monotonic"],
            end=ends[key]["monotonic"] if key in ends else None,
        )
        for key, record in starts.items()
    ]


def read_lease_log() -> tuple[dict[int, list[Claim]], int]:
    """Each job's claims (with their renewals and release), on this machine's monotonic clock,
    and how many renewals were logged."""
    with connection.cursor() as cursor:
        before = time.monotonic()
        cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
        offset = float(cursor.fetchone()[0]) - (before + time.monotonic()) / 2
        cursor.execute(
            "SELECT job_id, attempt, claimed_by, kind, state, error_type, "
            "extract(epoch FROM logged_at) "
            "FROM hosts_lease_log ORDER BY logged_at"
        )
        rows = cursor.fetchall()
    claims: dict[int, list[Claim]] = defaultdict(list)
    renewals = 0
    for job, attempt, worker, kind, state, error_type, logged_at in rows:
        moment = float(logged_at) - offset
        if kind == "claim":
            claims[job].append(Claim(job, attempt, worker, [moment]))
        elif kind == "renewal":
            claims[job][-1].leases.append(moment)
            renewals += 1
        else:
            claim = claims[job][-1]
            claim.released, claim.released_to, claim.error_type = moment, state, error_type
    return dict(claims), renewals


@pytest.mark.parametrize("network_timeout", ["3"])
def test_a_worker_cut_off_notices_within_its_network_timeout_and_obeys_sigterm(
    network, tmp_path, network_timeout
):
    """A full cut leaves the worker's connections open and silent. Within
    JOBS_NETWORK_TIMEOUT it reports the outage, and a SIGTERM sent during the cut ends it
    well inside its 30 s grace period (before the TCP bounds, it sat in a socket read for
    the system's hours, reporting nothing, and ignored SIGTERM)."""
    host = network[0]
    log_path = tmp_path / "cut-off.log"
    env = manage_env(
        DATABASE_URL=host.database_url(database_url()),
        JOBS_NETWORK_TIMEOUT=network_timeout,
        JOBS_LOG_LEVEL="INFO",
    )
    with log_path.open("w") as log:
        worker = host.popen(
            [sys.executable, "manage.py", "runjobs", "--interval", "0.2"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=log,
        )
    try:
        wait_for(lambda: WorkerRow.objects.filter(pid=worker.pid).exists(), timeout=30)
        host.cut("both")
        time.sleep(1)  # its next claim is sent into the cut
        worker.send_signal(signal.SIGTERM)
        began = time.monotonic()
        worker.wait(timeout=25)
        took = time.monotonic() - began
    finally:
        host.heal()
        host.stop_processes()
    output = log_path.read_text()
    assert worker.returncode == 0, output
    assert took < float(network_timeout) + 5, output
    assert "database unavailable while" in output
