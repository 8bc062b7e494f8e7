"""Start a distributed MXNet job (scheduler, parameter servers, workers), stream its output, stop it whole.

    python utils/launch.py -n 2 -s 1 -- python main.py kvstore=dist_sync num_gpus=0 progress=false ...
    python utils/launch.py -n 4 -s 2 --launcher ssh -H hosts.txt -- python main.py kvstore=dist_sync ...

MXNet's parameter-server kvstore (ps-lite) needs one scheduler, ``-s`` servers and ``-n``
workers, each told its role and where the scheduler listens through ``DMLC_*`` variables. Every
role runs the same command, as MXNet's own tracker does: importing ``mxnet`` with
``DMLC_ROLE=server`` (or ``scheduler``) runs that role's loop and exits, so only workers get to
train. ``--launcher local`` runs everything here on 127.0.0.1; ``--launcher ssh`` runs the
scheduler here and spreads servers and workers round-robin over the hosts of a host file, each
as ``ssh HOST 'cd DIR && env DMLC_...=... COMMAND'`` (same code and data path on every host).

Each line a process prints comes out prefixed with its role, e.g. ``[worker 1] ...``; the worker
numbers are the launcher's, not the kvstore ranks (ps-lite assigns those). When any process fails,
or ``--timeout`` runs out, or the launcher is interrupted, every process is sent SIGTERM, then
SIGKILL after ``--grace`` seconds, and the launcher exits non-zero.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from utils.runtime.cli import bounded, non_negative_float, positive_int

LOOPBACK = "127.0.0.1"
DEFAULT_SSH = "ssh -tt -o BatchMode=yes"  # -tt: closing the connection hangs up the remote command
TIMEOUT_EXIT = 124
POLL_S = 0.1


@dataclass
class Role:
    """One process of the job: what it is and where it runs (``host`` None: on this machine)."""

    kind: str  # scheduler, server or worker
    index: int
    host: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.kind if self.kind == "scheduler" else f"{self.kind} {self.index}"


def read_hostfile(path: str | Path) -> list[str]:
    """SSH destinations, one a line (``host`` or ``user@host``); blank lines and ``#`` comments skipped."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the host file ({err.strerror or err})") from None
    hosts = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line.split()) != 1:
            raise ValueError(f"{path} line {number}: expected one host per line, got {line!r}")
        hosts.append(line)
    if not hosts:
        raise ValueError(f"{path}: no hosts in the host file")
    return hosts


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on at ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def outward_ip(host: str) -> str:
    """The address of this machine on the route to ``host`` (a UDP connect sends no packet)."""
    name = host.rsplit("@", 1)[-1]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((name, 22))
            return sock.getsockname()[0]
    except OSError as err:
        raise ValueError(f"cannot tell which address {name} reaches this machine at ({err}); "
                         "give --host_ip") from None


def plan(num_workers: int, num_servers: int, hosts: Sequence[str | None], root_uri: str, port: int,
         extra_env: dict[str, str] | None = None) -> list[Role]:
    """The scheduler (here), then servers and workers round-robin over ``hosts``, each with its DMLC_* environment."""
    if num_workers < 1 or num_servers < 1:
        raise ValueError(f"need at least one worker and one server, got {num_workers} and {num_servers}")
    common = {"DMLC_PS_ROOT_URI": root_uri, "DMLC_PS_ROOT_PORT": str(port), "DMLC_NUM_SERVER": str(num_servers),
              "DMLC_NUM_WORKER": str(num_workers), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    roles = [Role("scheduler", 0, None, {**common, "DMLC_ROLE": "scheduler"})]
    roles += [Role("server", i, hosts[i % len(hosts)], {**common, "DMLC_ROLE": "server"}) for i in range(num_servers)]
    roles += [Role("worker", i, hosts[i % len(hosts)], {**common, "DMLC_ROLE": "worker"}) for i in range(num_workers)]
    return roles


def ssh_command(ssh: Sequence[str], host: str, workdir: str, env: dict[str, str], command: Sequence[str]) -> list[str]:
    """``ssh HOST 'cd DIR && env K=V ... COMMAND'``, quoted for the remote shell."""
    assignments = " ".join(shlex.quote(f"{key}={value}") for key, value in env.items())
    remote = f"cd {shlex.quote(workdir)} && env {assignments} {shlex.join(command)}"
    return [*ssh, host, remote]


def local_threads(roles: Sequence[Role]) -> dict[str, str]:
    """OMP_NUM_THREADS for workers sharing this machine: its cores split between them (unless already set)."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    here = sum(1 for r in roles if r.kind == "worker" and r.host is None)
    return {"OMP_NUM_THREADS": str(max(1, len(os.sched_getaffinity(0)) // max(here, 1)))}


class Job:
    """The started processes, their output pumps, and the rules for stopping them together."""

    def __init__(self, grace: float, out: object = None) -> None:
        self.grace = grace
        self.out = out or sys.stdout
        self.procs: list[tuple[Role, subprocess.Popen]] = []
        self.pumps: list[threading.Thread] = []
        self.lock = threading.Lock()

    def say(self, message: str) -> None:
        with self.lock:
            print(f"[launch] {message}", file=sys.stderr, flush=True)

    def start(self, role: Role, argv: Sequence[str], env: dict[str, str] | None) -> None:
        proc = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                start_new_session=True)  # its own process group: stopped with everything it starts
        self.procs.append((role, proc))
        pump = threading.Thread(target=self._pump, args=(role.name, proc), daemon=True)
        pump.start()
        self.pumps.append(pump)
        self.say(f"started {role.name}{f' on {role.host}' if role.host else ''} (pid {proc.pid})")

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:  # text mode: "\r" of progress bars also ends a line
            line = line.rstrip("\n")
            if line:
                with self.lock:
                    print(f"[{name}] {line}", file=self.out, flush=True)

    def wait(self, timeout: float | None) -> int:
        """Until every worker succeeded (0), one process failed, or the time ran out (124)."""
        deadline = time.monotonic() + timeout if timeout else None
        orphaned_since = None
        while True:
            for role, proc in self.procs:
                code = proc.poll()
                if code not in (None, 0):
                    self.say(f"{role.name} exited with {_describe(code)}; stopping the others")
                    return code if code > 0 else 128 - code
            workers = [proc for role, proc in self.procs if role.kind == "worker"]
            if all(proc.poll() == 0 for proc in workers):
                return 0
            helpers_gone = any(proc.poll() == 0 for role, proc in self.procs if role.kind != "worker")
            if helpers_gone and orphaned_since is None:
                orphaned_since = time.monotonic()  # normal at shutdown, a hang if workers keep running
            if orphaned_since is not None and time.monotonic() - orphaned_since > self.grace:
                self.say(f"the scheduler or a server ended but workers still run after {self.grace:g} s; stopping")
                return 1
            if deadline is not None and time.monotonic() > deadline:
                self.say(f"--timeout {timeout:g} s reached; stopping every process")
                return TIMEOUT_EXIT
            time.sleep(POLL_S)

    def finish(self, wait_first: float = 0.0) -> None:
        """Let processes end by themselves for ``wait_first`` s, then SIGTERM, then SIGKILL after the grace period."""
        for sig, patience in ((None, wait_first), (signal.SIGTERM, self.grace), (signal.SIGKILL, self.grace)):
            live = [(role, proc) for role, proc in self.procs if proc.poll() is None]
            if not live:
                break
            if sig is not None:
                for _, proc in live:
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        pass
                self.say(f"sent {sig.name} to {', '.join(role.name for role, _ in live)}")
            end = time.monotonic() + patience
            while time.monotonic() < end and any(proc.poll() is None for _, proc in live):
                time.sleep(POLL_S)
        for pump in self.pumps:
            pump.join(timeout=self.grace)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


class _Stop(Exception):
    """SIGTERM to the launcher: stop the job like after a failure."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def launch(args: argparse.Namespace) -> int:
    """Start every role, wait, stop them all; the job's exit status."""
    if not args.command:
        raise ValueError("no command to run: put it after --, e.g. -- python main.py kvstore=dist_sync")
    if args.launcher == "ssh":
        if not args.hostfile:
            raise ValueError("--launcher ssh needs --hostfile")
        hosts: list[str | None] = list(read_hostfile(args.hostfile))
        root_uri = args.host_ip or outward_ip(hosts[0])
    else:
        hosts, root_uri = [None], args.host_ip or LOOPBACK
    port = args.port or free_port(root_uri)
    extra = dict(_parse_env(item) for item in args.env)
    roles = plan(args.num_workers, args.num_servers, hosts, root_uri, port, extra)
    threads = local_threads(roles)
    ssh = shlex.split(args.ssh)
    job = Job(args.grace)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    code = 1
    try:
        job.say(f"scheduler at {root_uri}:{port}; {args.num_servers} server(s), {args.num_workers} worker(s)")
        for role in roles:
            if role.host is None:
                defaults = threads if role.kind == "worker" else {"OMP_NUM_THREADS": "1"}
                job.start(role, args.command, {**os.environ, **defaults, **role.env})
            else:
                job.start(role, ssh_command(ssh, role.host, args.workdir, role.env, args.command), None)
        code = job.wait(args.timeout)
        # After success the scheduler and servers end by themselves; after a failure, stop now.
        job.finish(wait_first=args.grace if code == 0 else 0.0)
    except (KeyboardInterrupt, _Stop) as err:
        job.say(f"interrupted ({err or 'Ctrl-C'}); stopping every process")
        job.finish()
        code = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    job.say(f"done, exit status {code}")
    return code


def _parse_env(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key or not key.replace("_", "").isalnum():
        raise ValueError(f"--env {item!r}: expected KEY=VALUE")
    return key, value



def build_parser() -> argparse.ArgumentParser:
    # The command after -- is passed on as typed: argparse.parse_args, not utils.runtime.cli.parse_args, whose key=value
    # rewriting would turn the command's own "timeout=5" into this launcher's --timeout.
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("-n", "--num_workers", type=positive_int, required=True, help="worker processes (they train)")
    parser.add_argument("-s", "--num_servers", type=positive_int, default=1,
                        help="parameter-server processes (default: %(default)s)")
    parser.add_argument("--launcher", choices=("local", "ssh"), default="local",
                        help="local: every process on this machine (127.0.0.1); ssh: servers and workers on the "
                             "hosts of --hostfile, the scheduler here (default: %(default)s)")
    parser.add_argument("-H", "--hostfile", default=None,
                        help="ssh: file of hosts, one a line (host or user@host) (default: none)")
    parser.add_argument("--host_ip", default=None,
                        help="address the scheduler listens at and the others connect to (default: 127.0.0.1 for "
                             "local, this machine's address on the route to the first host for ssh)")
    parser.add_argument("--port", type=bounded(int, 0, 65535), default=0,
                        help="scheduler port, 1-65535 (default 0: a free one)")
    parser.add_argument("--workdir", default=os.getcwd(),
                        help="ssh: directory to run the command in on every host (default: the current one)")
    parser.add_argument("--ssh", default=DEFAULT_SSH, help="ssh client and its options (default: %(default)s)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for every process, e.g. --env OMP_NUM_THREADS=8 (repeatable; "
                             "default: none)")
    parser.add_argument("--timeout", type=non_negative_float, default=0.0,
                        help="stop everything and exit 124 after this many seconds (default 0: no limit)")
    parser.add_argument("--grace", type=non_negative_float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL when stopping, and for the scheduler and servers "
                             "to end after the workers (default: %(default)s)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command every role runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    try:
        return launch(args)
    except ValueError as err:
        print(f"launch: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
