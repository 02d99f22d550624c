"""A local stand-in for the Microsoft identity platform v2.0 and Microsoft Graph v1.0 mail.

It follows ``shared/docs/graph-contract.md``: Microsoft's documented behaviour, strict where the docs
disagree, with switches for the other reading. Start it with ``python -m m365_sandbox serve``.
"""
