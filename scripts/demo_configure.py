"""Point the demo database at the Microsoft 365 sandbox. Run by `make run` through `odoo-bin shell`
(stdin), with ``env`` bound to the demo database and EPILOT_SANDBOX_JSON naming the sandbox's ready line.

HOOK for the settings' owner: SETTINGS maps ``res.config.settings`` fields to values taken from that line.
Fields that do not exist yet are listed and skipped, so this runs cleanly before and after they land; adjust
the names when the settings are written. Everything is written through the settings wizard, so the module's
own ``set_values`` does the storing (and encrypting).
"""
import json
import os

# The sandbox's ready line (see m365_sandbox/README.md): URLs, CA bundle, and with --seed demo the tenant,
# the app's client id and secret, and the demo users.
with open(os.environ["EPILOT_SANDBOX_JSON"], encoding="utf-8") as ready_line:
    sandbox = json.load(ready_line)

SETTINGS = {
    "epilot_outlook_authority_base_url": sandbox.get("authority_base_url"),
    "epilot_outlook_graph_base_url": sandbox.get("graph_base_url"),
    "epilot_outlook_ca_bundle": sandbox.get("ca_bundle"),
    "epilot_outlook_client_id": sandbox.get("client_id"),
    "epilot_outlook_client_secret": sandbox.get("client_secret"),
    "epilot_outlook_tenant_id": sandbox.get("tenant_id"),
}

Settings = env["res.config.settings"]  # noqa: F821 (provided by odoo-bin shell)
known = {name: value for name, value in SETTINGS.items() if name in Settings._fields and value is not None}
pending = sorted(set(SETTINGS) - set(known))
if known:
    Settings.create(known).execute()
    env.cr.commit()  # noqa: F821
print("demo_configure: set %s" % (", ".join(sorted(known)) or "nothing"))
if pending:
    print("demo_configure: not yet (no such setting or no value): %s" % ", ".join(pending))
