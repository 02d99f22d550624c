"""Room: identity (to be written)."""
from __future__ import annotations


def routes(state):
    return []
