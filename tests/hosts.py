"""Several "hosts" on this machine: network namespaces that reach PostgreSQL over a network.

A test of what happens past one machine needs workers whose network can be cut and whose
clock can be wrong, without a second machine. Each host here is a Linux network namespace
(`ip netns`) joined to the root namespace by a veth pair on a /24 of its own
(10.77.N.0/24: the root side is .1, the host side .2). PostgreSQL listens on 127.0.0.1 only
and must stay so, so a small TCP forwarder (asyncio, in a thread of the test process) listens
on each host's root-side address and relays to the server: a worker in the namespace reaches
the database only through its veth, and whatever is done to that link happens to the
worker's connections.

- A cut is a table of nftables rules inside the host's namespace: `both` drops every packet
  in and out of its veth (a full partition), `in` only those arriving (the database's
  replies are lost, its statements still arrive and commit), `out` only those leaving.
  `heal()` deletes the table. Nothing is sent to either end when a cut starts or ends:
  TCP finds out by itself, as it would on a real network.
- A clock offset runs the host's processes under libfaketime (Debian's `faketime`):
  `time.time()` and `datetime.now()` move, `time.monotonic()` must not, as on a real host
  whose wall clock is wrong. libfaketime 0.9.10 (bookworm) fakes the monotonic clock too
  unless `FAKETIME_DONT_FAKE_MONOTONIC=1` (it jumps to the faked wall-clock value), and
  then a lock or `Event` wait with a timeout never returns: a worker hangs. So that variable
  is always set, and `Host.clock_shift()` measures both clocks so a test can refuse an
  environment where they do not behave. One wart remains with it set: Python's
  `time.sleep()` fails with EINVAL (libfaketime mistranslates its absolute monotonic
  deadline), so code run under an offset waits on an Event instead; the framework does not
  call `time.sleep()` in a worker.

Everything created (namespaces, veth pairs, nftables tables, forwarders, processes started
through `Host.popen`) is removed when `network()` exits, on failure too. It needs root and
iproute2 and nftables; `check_available()` says what is missing, for a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

SUBNETS = ipaddress.ip_network("10.77.0.0/16")
CUT_TABLE = "jobs_hosts_cut"
CUT_DIRECTIONS = {"both": ("input", "output"), "in": ("input",), "out": ("output",)}
FAKETIME_LIBRARY_GLOB = "/usr/lib/*/faketime/libfaketimeMT.so.1"  # MT: workers use threads
INSTALL = "apt-get install -y iproute2 nftables faketime"
STOP_SECONDS = 30


class HostsUnavailable(RuntimeError):
    """This machine cannot make hosts: not root, a tool missing, or namespaces refused."""


def check_available() -> None:
    """Raise HostsUnavailable, saying what to do, unless namespaces and cuts can be made."""
    if os.geteuid() != 0:
        raise HostsUnavailable("needs root to create network namespaces and nftables rules")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            raise HostsUnavailable(f"no `{tool}` ({package}): {INSTALL}")
    probe = f"jhprobe{os.getpid()}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        raise HostsUnavailable(
            f"cannot create a network namespace here (ip netns add: {added.stderr.strip()}); "
            "a container needs CAP_SYS_ADMIN and CAP_NET_ADMIN"
        )
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def faketime_library() -> str:
    """The libfaketime to preload, or HostsUnavailable saying how to install it."""
    found = sorted(glob.glob(FAKETIME_LIBRARY_GLOB))
    if not found:
        raise HostsUnavailable(f"no libfaketime ({FAKETIME_LIBRARY_GLOB}): {INSTALL}")
    return found[0]


def _run(*command: str, stdin: str | None = None) -> None:
    """Run one ip/nft command; raise with its error output if it fails."""
    result = subprocess.run(command, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")


class Forwarder:
    """TCP relays from addresses of the root namespace to one target, on a thread of its own.

    Each accepted connection gets its own connection to the target; bytes are copied both
    ways until either side closes, then both are closed. A relay never times out and never
    closes a quiet connection: a cut is the veth's business, not the relay's.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="hosts-forwarder", daemon=True
        )
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._reply_delay: dict[str, float] = {}

    def start(self) -> None:
        self._thread.start()

    def listen(self, address: str) -> int:
        """Start relaying from address:<a free port> to the target; returns the port."""
        return asyncio.run_coroutine_threadsafe(self._listen(address), self._loop).result(10)

    def delay_replies(self, address: str, seconds: float) -> None:
        """Hold what the target sends to clients of `address` this long: network latency."""
        self._reply_delay[address] = seconds

    def close(self) -> None:
        """Stop listening, close every relayed connection, stop the thread."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    async def _listen(self, address: str) -> int:
        server = await asyncio.start_server(self._relay, address, 0)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for server in self._servers:
            await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, upstream_writer))
        address = writer.get_extra_info("sockname")[0]
        try:
            await asyncio.gather(
                self._copy(reader, upstream_writer),
                self._copy(upstream_reader, writer, lambda: self._reply_delay.get(address, 0)),
            )
        finally:
            self._writers.difference_update((writer, upstream_writer))

    @staticmethod
    async def _copy(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        delay: Callable[[], float] = lambda: 0,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if seconds := delay():
                    await asyncio.sleep(seconds)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()  # the other direction's reader then ends too


@dataclass
class Host:
    """One namespace: its name, its link, the port its database relay listens on."""

    index: int
    namespace: str
    root_link: str
    host_link: str
    root_address: str
    host_address: str
    database_port: int = 0
    cut_direction: str | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)
    relay: Forwarder | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"host{self.index}"

    def database_url(self, url: str) -> str:
        """`url` (a postgres URL of 127.0.0.1) pointed at this host's way to the server."""
        scheme, rest = url.split("://", 1)
        credentials, _, location = rest.rpartition("@")
        database = location.split("/", 1)[1]
        credentials = f"{credentials}@" if credentials else ""
        return f"{scheme}://{credentials}{self.root_address}:{self.database_port}/{database}"

    def cut(self, direction: str = "both") -> None:
        """Drop this host's packets: `both` ways, or only those coming `in` or going `out`."""
        if direction not in CUT_DIRECTIONS:
            raise ValueError(f"cut direction must be one of {sorted(CUT_DIRECTIONS)}")
        if self.cut_direction is not None:
            raise RuntimeError(f"{self.name} is already cut ({self.cut_direction})")
        hooks = {"input": "iifname", "output": "oifname"}
        chains = "".join(
            f"chain {chain} {{ type filter hook {chain} priority 0; policy accept; "
            f'{hooks[chain]} "{self.host_link}" drop; }}\n'
            for chain in CUT_DIRECTIONS[direction]
        )
        self.nft(f"table inet {CUT_TABLE} {{\n{chains}}}\n")
        self.cut_direction = direction

    def heal(self) -> None:
        """Remove the cut, if any: packets flow again; nothing is sent to either end."""
        if self.cut_direction is not None:
            self.nft(f"delete table inet {CUT_TABLE}\n")
            self.cut_direction = None

    def delay_replies(self, seconds: float) -> None:
        """Make what the database sends this host take `seconds` longer (0: no delay)."""
        assert self.relay is not None
        self.relay.delay_replies(self.root_address, seconds)

    def nft(self, ruleset: str) -> None:
        _run("ip", "netns", "exec", self.namespace, "nft", "-f", "-", stdin=ruleset)

    def command(self, argv: Sequence[str], clock_offset: float = 0) -> list[str]:
        """`argv` to run inside this host, its wall clock `clock_offset` seconds off."""
        clock: list[str] = []
        if clock_offset:
            clock = [
                "env",
                f"LD_PRELOAD={faketime_library()}",
                f"FAKETIME={clock_offset:+g}s",
                "FAKETIME_DONT_FAKE_MONOTONIC=1",
            ]
        return ["ip", "netns", "exec", self.namespace, *clock, *argv]

    def popen(
        self, argv: Sequence[str], *, env: Mapping[str, str], clock_offset: float = 0, **kwargs
    ) -> subprocess.Popen:
        """Start `argv` inside this host; it is stopped when the network is taken down.

        `ip netns exec` and `env` both exec, so the process's pid is the program's own.
        """
        process = subprocess.Popen(self.command(argv, clock_offset), env=dict(env), **kwargs)
        self.processes.append(process)
        return process

    def clock_shift(self, clock_offset: float) -> tuple[float, float]:
        """How far (wall, monotonic) clocks of a process here are from ours, in seconds.

        Measured around a short Python run, so each is right to about its start-up time.
        """
        probe = "import json, time; print(json.dumps([time.time(), time.monotonic()]))"
        wall_before, monotonic_before = time.time(), time.monotonic()
        result = subprocess.run(
            self.command([sys.executable, "-c", probe], clock_offset),
            capture_output=True,
            text=True,
            check=True,
        )
        wall_after, monotonic_after = time.time(), time.monotonic()
        wall, monotonic = json.loads(result.stdout)
        return (
            wall - (wall_before + wall_after) / 2,
            monotonic - (monotonic_before + monotonic_after) / 2,
        )

    def stop_processes(self) -> None:
        """SIGTERM what this host runs, SIGKILL what is left after STOP_SECONDS."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """`count` /24s of 10.77.0.0/16 that no interface of the root namespace uses."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    free = [
        subnet
        for subnet in SUBNETS.subnets(new_prefix=24)
        if subnet.network_address != SUBNETS.network_address
        and f" {subnet.network_address + 1}/" not in used
    ]
    if len(free) < count:
        raise RuntimeError(f"fewer than {count} free /24s in {SUBNETS}")
    return free[:count]


def _add_host(index: int, subnet: ipaddress.IPv4Network) -> Host:
    prefix = f"jh{os.getpid() % 100_000}"  # interface names are at most 15 characters
    host = Host(
        index=index,
        namespace=f"{prefix}-{index}",
        root_link=f"{prefix}r{index}",
        host_link=f"{prefix}h{index}",
        root_address=str(subnet.network_address + 1),
        host_address=str(subnet.network_address + 2),
    )
    _run("ip", "netns", "add", host.namespace)
    _run("ip", "-n", host.namespace, "link", "set", "lo", "up")
    _run(
        "ip", "link", "add", host.root_link, "type", "veth",
        "peer", "name", host.host_link, "netns", host.namespace,
    )  # fmt: skip
    _run("ip", "addr", "add", f"{host.root_address}/24", "dev", host.root_link)
    _run("ip", "link", "set", host.root_link, "up")
    _run(
        "ip", "-n", host.namespace, "addr", "add", f"{host.host_address}/24", "dev", host.host_link
    )
    _run("ip", "-n", host.namespace, "link", "set", host.host_link, "up")
    return host


def _remove_host(host: Host) -> None:
    """Stop its processes and delete its link and namespace (its nftables go with it)."""
    host.stop_processes()
    subprocess.run(["ip", "link", "del", host.root_link], capture_output=True)
    subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)


@contextlib.contextmanager
def network(count: int, *, database_host: str, database_port: int) -> Iterator[list[Host]]:
    """`count` hosts whose way to the database at database_host:port runs through their veth.

    Raises HostsUnavailable (before creating anything) when this machine cannot make them.
    """
    check_available()
    forwarder = Forwarder(database_host, database_port)
    forwarder.start()
    made: list[Host] = []
    try:
        for index, subnet in enumerate(_free_subnets(count), start=1):
            made.append(_add_host(index, subnet))
            made[-1].database_port = forwarder.listen(made[-1].root_address)
            made[-1].relay = forwarder
        yield made
    finally:
        for host in made:
            _remove_host(host)
        forwarder.close()
