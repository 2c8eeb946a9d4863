"""The worker's HTTP endpoints: ``/metrics``, ``/healthz``, ``/readyz``, and 404 for anything else."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from streams.health import Health

__all__ = ["StatusServer", "status_app"]

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data)))])
    return [data]


def status_app(registry: CollectorRegistry, health: Health) -> WsgiApp:
    """The WSGI application: Prometheus text on ``/metrics``, probes on ``/healthz`` and ``/readyz``."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            if health.alive():
                return _text(start_response, "200 OK", "ok\n")
            return _text(start_response, "503 Service Unavailable",
                         f"loop: no tick within {health.liveness_window_s:g}s\n")
        if path == "/readyz":
            problems = health.not_ready()
            if not problems:
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable", "".join(f"{p}\n" for p in problems))
        return _text(start_response, "404 Not Found", "not found: try /metrics, /healthz or /readyz\n")

    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow Redis probe never blocks a scrape."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, fmt: str, *args: Any) -> None:
        """Probes and scrapes are not logged (one line per request would drown the worker's logs)."""


class StatusServer:
    """Serves ``status_app`` on a daemon thread, as a context manager; port 0 serves nothing."""

    def __init__(self, registry: CollectorRegistry, health: Health, port: int, addr: str = "0.0.0.0") -> None:
        self._app = status_app(registry, health)
        self._port = port
        self._addr = addr
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (0 when off)."""
        return self._server.server_port if self._server is not None else 0

    def __enter__(self) -> StatusServer:
        if self._port:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                self._addr, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            server_class = type("_Server", (_ThreadingWSGIServer,), {"address_family": family})
            self._server = make_server(sockaddr[0], self._port, self._app, server_class, _QuietHandler)
            self._thread = threading.Thread(target=self._server.serve_forever, name="unistate-status",
                                            daemon=True)
            self._thread.start()
            logger.info("status endpoints serving addr=%s port=%d paths=/metrics,/healthz,/readyz",
                        self._addr, self._port)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
