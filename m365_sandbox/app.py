"""Assembles the sandbox's two Starlette applications from its rooms.

* the **login** app plays ``login.microsoftonline.com`` (identity platform v2.0);
* the **graph** app plays ``graph.microsoft.com`` (``/v1.0``) and also serves the control API
  (``/control``) and the web page (``/``). Like Graph, it matches the literal segments of ``/v1.0/…`` resource
  paths case-insensitively (``/Users/{m}/MailFolders/Inbox/Messages/Delta``, ``$batch`` item urls included, as those
  go through the same routes); the values of path parameters keep their case, because message ids are
  case-sensitive (contract §3.3). The control API and the web page stay case-sensitive: they are the sandbox's own.

Each room module exposes ``routes(state) -> list[BaseRoute]``.
"""
from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

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
    for route in routes:
        if isinstance(route, Route) and route.path.startswith("/v1.0"):
            route.path_regex = _ignore_case(route.path_regex)
    return Starlette(routes=routes, exception_handlers={GraphDenied: _graph_denied})


def _ignore_case(path_regex: re.Pattern) -> re.Pattern:
    """``path_regex`` matching the resource path after ``/v1.0`` in any case (the version segment stays as Graph
    spells it). Starlette's parameters are ``[^/]+`` or ``.*``, so ignoring case widens only the literal segments;
    what a parameter captures is the request's text, unchanged."""
    prefix = "^" + re.escape("/v1.0")
    assert path_regex.pattern.startswith(prefix), path_regex.pattern
    return re.compile(f"{prefix}(?i:{path_regex.pattern[len(prefix):]})", path_regex.flags)
