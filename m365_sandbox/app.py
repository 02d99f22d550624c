"""Assembles the sandbox's two Starlette applications from its rooms.

* the **login** app plays ``login.microsoftonline.com`` (identity platform v2.0);
* the **graph** app plays ``graph.microsoft.com`` (``/v1.0``) and also serves the control API
  (``/control``) and the web page (``/``).

Each room module exposes ``routes(state) -> list[BaseRoute]``.
"""
from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request

from . import control, graph_mail, identity, subscriptions, web
from .auth import GraphDenied
from .state import SandboxState


async def _graph_denied(_request: Request, exc: GraphDenied):
    return exc.response


def create_login_app(state: SandboxState) -> Starlette:
    return Starlette(routes=identity.routes(state))


def create_graph_app(state: SandboxState) -> Starlette:
    routes = [*control.routes(state), *subscriptions.routes(state), *graph_mail.routes(state),
              *web.routes(state)]
    return Starlette(routes=routes, exception_handlers={GraphDenied: _graph_denied})
