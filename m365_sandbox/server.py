"""Serving: both apps over HTTPS on loopback, in background threads of the calling process.

:func:`start` is what the CLI (``python -m m365_sandbox serve``) and the pytest fixture use. It returns once
both listeners accept connections.
"""
from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from dataclasses import dataclass, field

import uvicorn

from .app import create_graph_app, create_login_app
from .state import SandboxState
from .tls import make_certificates


@dataclass
class RunningSandbox:
    state: SandboxState
    host: str
    login_port: int
    graph_port: int
    ca_path: str
    workdir: str
    _servers: list = field(default_factory=list, repr=False)
    _threads: list = field(default_factory=list, repr=False)

    @property
    def authority_base(self) -> str:
        """Plays ``https://login.microsoftonline.com``; append ``/{tenant}``."""
        return f"https://{self.host}:{self.login_port}"

    @property
    def graph_base(self) -> str:
        """Plays ``https://graph.microsoft.com/v1.0``."""
        return f"https://{self.host}:{self.graph_port}/v1.0"

    @property
    def control_base(self) -> str:
        return f"https://{self.host}:{self.graph_port}/control"

    @property
    def web_url(self) -> str:
        return f"https://{self.host}:{self.graph_port}/"

    def describe(self) -> dict:
        return {"authority_base_url": self.authority_base, "graph_base_url": self.graph_base,
                "control_base_url": self.control_base, "web_url": self.web_url, "ca_bundle": self.ca_path}

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=5)


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on an accepted socket only when its proto says TCP. Without it,
    # a response's body (a second segment after the headers) waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)     # inherited by accepted sockets on Linux
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _serve_in_thread(app, sock: socket.socket, certs: dict, name: str):
    config = uvicorn.Config(app, ssl_certfile=certs["cert"], ssl_keyfile=certs["key"], log_level="warning",
                            access_log=False, lifespan="off", timeout_keep_alive=30,
                            # an idle keep-alive TLS connection otherwise holds shutdown for ~30 s (SSL close)
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None   # not the main thread

    def run():
        asyncio.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return server, thread


def start(state: SandboxState | None = None, host: str = "127.0.0.1", login_port: int = 0,
          graph_port: int = 0, workdir: str | None = None) -> RunningSandbox:
    """Start the login and graph listeners; ports of 0 pick free ones."""
    state = state or SandboxState()
    workdir = workdir or tempfile.mkdtemp(prefix="m365-sandbox-")
    certs = make_certificates(workdir)
    login_sock, graph_sock = _bind(host, login_port), _bind(host, graph_port)
    running = RunningSandbox(state=state, host=host, login_port=login_sock.getsockname()[1],
                             graph_port=graph_sock.getsockname()[1], ca_path=certs["ca"], workdir=workdir)
    state.extra["urls"] = running.describe()
    for app, sock, name in ((create_login_app(state), login_sock, "m365-login"),
                            (create_graph_app(state), graph_sock, "m365-graph")):
        server, thread = _serve_in_thread(app, sock, certs, name)
        running._servers.append(server)
        running._threads.append(thread)
    for server in running._servers:
        while not server.started:
            if not any(t.is_alive() for t in running._threads):
                raise RuntimeError("the sandbox failed to start")
            threading.Event().wait(0.01)
    return running
