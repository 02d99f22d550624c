"""Point the demo database at the Microsoft 365 sandbox. Run by `make run` through `odoo-bin shell` (stdin),
with ``env`` bound to the demo database (superuser) and EPILOT_SANDBOX_JSON naming the sandbox's ready line.

It creates or updates the main company's ``epilot.outlook.connection`` with the sandbox's app (client id and
secret), its endpoints and CA bundle, and the demo tenant's domain as the consent tenant, all through the ORM:
the client secret's inverse encrypts it with the key of EPILOT_OUTLOOK_KEYS (set by make run). It also sets
``web.base.url`` to the address Odoo listens on, so the connection's redirect URI is one the sandbox's app
registered. It also creates the demo agent (login ``agent``, password ``agent``), a member of the shared inbox
of support@ (created empty here, filled once the mailbox is added). Running it again changes nothing that is
already right.

A connection that holds a tenant (consent granted, connected, or needing a reconnect) of another client id or
tenant is left alone, so a real tenant connected in the demo database is never overwritten; the script then
exits with status 3 and make run looks again next time.
"""
import json
import os
import sys

from odoo.exceptions import UserError
from odoo.tools import config

CALLBACK_PATH = "/epilot_outlook/oauth/callback"
HOLDS_A_TENANT = ("consent_granted", "connected", "needs_reconnect")


def say(message):
    print("demo_configure: %s" % message, flush=True)


# The sandbox's ready line (see m365_sandbox/README.md): URLs, CA bundle, and with --seed demo the tenant,
# the app's client id and secret, and the demo users.
with open(os.environ["EPILOT_SANDBOX_JSON"], encoding="utf-8") as ready_line:
    sandbox = json.load(ready_line)
missing = [key for key in ("authority_base_url", "graph_base_url", "ca_bundle", "client_id", "client_secret",
                           "tenant_id", "tenant_domain", "service_account") if not sandbox.get(key)]
if missing:
    say("the sandbox's ready line lacks %s (was it started with --seed demo?); nothing written" % ", ".join(missing))
    sys.exit(2)

env = globals()["env"]  # provided by odoo-bin shell
company = env.ref("base.main_company")
Connection = env["epilot.outlook.connection"].with_company(company)
connection = Connection.search([("company_id", "=", company.id)], limit=1)

# ------------------------------------------------------------------------------------------- web.base.url
# The redirect URI is web.base.url + CALLBACK_PATH; make run registers http://127.0.0.1:<http_port>/... (and
# the localhost one) on the sandbox's app. Odoo rewrites web.base.url when an admin logs in, to the address
# in the browser: both registered addresses work.
base_url = "http://127.0.0.1:%s" % config["http_port"]
if base_url + CALLBACK_PATH not in sandbox.get("redirect_uris", []):
    say("warning: %s is not among the sandbox app's redirect URIs %s" % (base_url + CALLBACK_PATH,
                                                                       sandbox.get("redirect_uris")))
Parameters = env["ir.config_parameter"].sudo()
if Parameters.get_param("web.base.url") != base_url:
    Parameters.set_param("web.base.url", base_url)
    say("web.base.url = %s" % base_url)

# ------------------------------------------------------------------------------------------- allowed hosts
# A connection accepts only Microsoft's sign-in and Graph hosts, unless a system administrator allows others in
# this system parameter (editors cannot): the demo allows exactly the sandbox's two, host:port.
from urllib.parse import urlsplit  # noqa: E402

allowed_hosts = " ".join(urlsplit(sandbox[key]).netloc for key in ("authority_base_url", "graph_base_url"))
if Parameters.get_param("epilot_outlook.allowed_hosts") != allowed_hosts:
    Parameters.set_param("epilot_outlook.allowed_hosts", allowed_hosts)
    say("epilot_outlook.allowed_hosts = %s (the sandbox's sign-in and Graph hosts)" % allowed_hosts)

# ------------------------------------------------------------------------------------------- demo agent
# A support agent (README: "Work the inbox as an agent"), member of support@'s inbox. The inbox is made here
# with the mailbox's address, so that adding the mailbox later (Add Shared Mailbox) re-links it instead of
# creating another. Demo data of the demo set-up, not of the module; the password is set only at creation.
AGENT_LOGIN, AGENT_PASSWORD = "agent", "agent"
support_email = "support@%s" % sandbox["tenant_domain"]
Inbox = env["epilot.shared.inbox"].with_context(active_test=False)
support_inbox = Inbox.search([("email", "=", support_email), ("company_id", "in", (company.id, False))], limit=1)
if not support_inbox:
    support_inbox = Inbox.create({"name": "Contoso Support", "email": support_email, "company_id": company.id})
    say("created the shared inbox %s for %s" % (support_inbox.name, support_email))
agent = env["res.users"].with_context(active_test=False).search([("login", "=", AGENT_LOGIN)], limit=1)
if not agent:
    agent = env["res.users"].with_context(no_reset_password=True).create({
        "name": "Alex Agent", "login": AGENT_LOGIN, "password": AGENT_PASSWORD,
        "email": "alex.agent@example.com", "company_id": company.id, "company_ids": [(6, 0, company.ids)],
        "group_ids": [(6, 0, [env.ref("epilot_outlook.group_agent").id])],
    })
    say("created the demo agent %s / %s" % (AGENT_LOGIN, AGENT_PASSWORD))
if agent not in support_inbox.member_user_ids:
    support_inbox.member_user_ids = [(4, agent.id)]
    say("the demo agent %s is a member of %s" % (AGENT_LOGIN, support_inbox.name))
env.cr.commit()

# ------------------------------------------------------------------------------------------- connection
values = {
    "client_id": sandbox["client_id"],
    "authority_host": sandbox["authority_base_url"],
    "graph_endpoint": sandbox["graph_base_url"],
    "ca_bundle": sandbox["ca_bundle"],
    "consent_tenant": sandbox["tenant_domain"],
    "service_account": sandbox["service_account"]["username"],
}


def stored_secret(name):
    """ The decrypted secret, or None when none is stored or it was encrypted with a key that is gone. """
    try:
        return connection._outlook_decrypt_secrets(name)[name]
    except UserError:
        return None


stored_tenant = stored_secret("tenant_id") if connection else None
if connection and connection.state in HOLDS_A_TENANT and (
        connection.client_id != sandbox["client_id"] or stored_tenant != sandbox["tenant_id"]):
    differences = []
    if connection.client_id != sandbox["client_id"]:
        differences.append("the app %s" % (connection.client_id or "(none)"))
    if stored_tenant != sandbox["tenant_id"]:  # The tenant id is one of the connection's secrets: not printed.
        differences.append("another tenant" if stored_tenant else "a tenant the configured keys cannot decrypt")
    say("the Outlook connection of %s is %s with %s, not with the sandbox's app %s and tenant %s: left alone. "
        "To point it at the sandbox, click Disconnect on the connection, then run make run again." % (
            company.name, connection.state, " and ".join(differences), sandbox["client_id"],
            sandbox["tenant_domain"]))
    env.cr.commit()  # web.base.url
    sys.exit(3)

if not connection:
    connection = Connection.create(dict(values, company_id=company.id, client_secret=sandbox["client_secret"]))
    say("created the Outlook connection of %s" % company.name)
else:
    changed = [name for name, value in values.items() if connection[name] != value]
    if changed:
        try:
            connection.write(values)
        except UserError as error:  # New sandbox ports on a connection holding tokens: Disconnect first.
            say("the Outlook connection of %s was left alone: %s" % (company.name, error.args[0]))
            env.cr.commit()  # web.base.url and the allowed hosts (the refused write changed nothing)
            sys.exit(3)
    # Write-only: compared decrypted, and stored (encrypted) only when it differs.
    if stored_secret("client_secret") != sandbox["client_secret"]:
        connection.client_secret = sandbox["client_secret"]
        changed.append("client_secret")
    if stored_tenant and stored_tenant != sandbox["tenant_id"]:
        # Left by an earlier tenant (an older sandbox seed, disconnected): Connect would skip the admin
        # consent and sign in there. Without it, Connect starts with the sandbox tenant's admin consent.
        connection._outlook_store_secrets({"tenant_id": None})
        changed.append("stored tenant cleared")
    say("updated the Outlook connection of %s: %s" % (company.name, ", ".join(changed))
        if changed else "the Outlook connection of %s is already set up" % company.name)
env.cr.commit()
say("connection %s: state %s, client id %s, consent tenant %s, redirect URI %s" % (
    connection.id, connection.state, connection.client_id, connection.consent_tenant, connection.redirect_uri))

# ------------------------------------------------------------------------------------------- outgoing servers
# Every synced Outlook address sends through its own outgoing mail server (Microsoft Graph, as the shared
# mailbox); addresses added since get one when their sync starts. Addresses of an older database get theirs here.
addresses = env["epilot.outlook.email.address"].search([("shared_inbox_id", "!=", False)])
missing_server = addresses.filtered(lambda address: not address.with_context(active_test=False).mail_server_ids)
if missing_server:
    missing_server._outlook_ensure_mail_server()
    env.cr.commit()
    say("outgoing mail servers (Microsoft Graph) for %s" % ", ".join(missing_server.mapped("email")))
