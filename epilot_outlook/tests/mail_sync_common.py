from datetime import timedelta

from odoo import fields

from ..outlook_core import mailbox as mailbox_module
from .outlook_sandbox_common import OutlookSandboxCase

SUPPORT = 'support@contoso.onmicrosoft.com'
BILLING = 'billing@contoso.onmicrosoft.com'
HR = 'hr@contoso.onmicrosoft.com'


class SyncAssertions:
    """ Both sides of a sync, compared: needs ``self.sandbox`` and ``self.graph_token`` (the service account's
    access token). The Odoo side is read through the address's own environment, so a test working with real
    cursors of its own reads what they committed. """

    def graph(self, method, path, payload=None, prefer_immutable=True):
        """ Call the sandbox's Graph as the service account (what a person does in Outlook). """
        headers = {'Authorization': 'Bearer %s' % self.graph_token}
        if prefer_immutable:
            headers['Prefer'] = 'IdType="ImmutableId"'
        response = self.sandbox.http.request(method, self.sandbox.info['graph_base_url'] + path, json=payload,
                                             headers=headers, timeout=30)
        self.assertLess(response.status_code, 300, response.text[:300])
        return response.json() if response.content else None

    # --- reading ----------------------------------------------------------------------------------------

    def graph_pages(self, path):
        """ The pages of a Graph listing (``GET path``, then each ``nextLink``), as the service account. """
        body = self.graph('GET', path)
        yield body
        while body.get('@odata.nextLink'):
            response = self.sandbox.http.get(body['@odata.nextLink'], timeout=30, headers={
                'Authorization': 'Bearer %s' % self.graph_token, 'Prefer': 'IdType="ImmutableId"'})
            body = response.json()
            yield body

    def outlook_ids(self, mailbox, folder, days=30):
        """ The immutable ids Outlook holds in ``folder`` for the window. """
        since = fields.Datetime.now() - timedelta(days=days)
        url = '/users/%s/mailFolders/%s/messages' % (mailbox, folder)
        params = '?$select=id&$top=1000&$filter=receivedDateTime ge %s' % (since.replace(microsecond=0)
                                                                          .isoformat() + 'Z')
        return [item['id'] for body in self.graph_pages(url + params) for item in body['value']]

    def odoo_records(self, address, folder):
        return address.env['epilot.outlook.message'].search([
            ('inbox_id', '=', address.shared_inbox_id.id), ('mailbox_email', '=', address.email),
            ('folder', '=', folder), ('removed_in_outlook', '=', False),
        ])

    def assertInSync(self, address, days=30):
        """ Odoo holds exactly Outlook's messages of the window, each once, each with its mail.message. """
        for folder in ('inbox', 'sentitems'):
            outlook = self.outlook_ids(address.email, folder, days)
            records = self.odoo_records(address, folder)
            odoo = records.mapped('graph_id')
            self.assertEqual(len(outlook), len(set(outlook)))
            self.assertEqual(len(odoo), len(set(odoo)), "a message was imported twice")
            self.assertEqual(set(odoo), set(outlook), "Odoo and Outlook differ in %s" % folder)
            self.assertTrue(all(records.mapped('mail_message_id')), "a sync record has no message")
            messages = records.mail_message_id
            # One e-mail per Message-Id: copies of one e-mail (delivered twice) share it.
            self.assertEqual(len(messages), len({record.internet_message_id or record.id for record in records}))
            # E-mails imported from Outlook, and messages agents sent from Odoo (comments) whose copy is synced.
            self.assertLessEqual(set(messages.mapped('message_type')), {'email', 'comment'})
            self.assertTrue(all(message.message_type == 'email' or message.email_from and address.email
                                in message.email_from for message in messages), "a synced note or notification")
        # Each conversation's figures, equal a recount of its records.
        self.env.invalidate_all()
        for conversation in address.shared_inbox_id.conversation_ids:
            records = self.env['epilot.outlook.message'].search([
                ('conversation_id', '=', conversation.id), ('mail_message_id', '!=', False)])
            dates = [date for date in records.mapped('date') if date]
            self.assertEqual(
                (conversation.email_count, conversation.first_message_date, conversation.last_message_date),
                (len(records.mail_message_id), min(dates, default=False), max(dates, default=False)),
                "the figures of conversation %r" % conversation.name)
        # ... and every stored figure and status is what a refresh from the records gives (conversations a
        # page creates get theirs at creation, without the refresh; tools: _outlook_stats_of_new).
        conversations = address.shared_inbox_id.conversation_ids
        figures = ['first_message_date', 'last_message_date', 'email_count', 'unread_count', 'is_unread',
                   'last_inbound_date', 'last_outbound_date', 'state',
                   # response times (test_response_times.py): the first received e-mail and the first answer
                   'first_received_date', 'first_response_date', 'first_response_hours', 'first_response_deadline']
        stored = conversations.read(figures)
        conversations._outlook_refresh_stats()
        conversations._outlook_sla_refresh(force=True)   # the hours and deadlines too, not only what moved
        self.assertEqual(conversations.read(figures), stored, "a conversation's figures differ from a refresh")


class OutlookMailSyncCase(SyncAssertions, OutlookSandboxCase):
    """ A connected connection on a seeded sandbox, and the tools to sync mailboxes and compare both sides.

    Every sync test ends with :meth:`assertInSync`: the messages Odoo holds for a mailbox's window are exactly
    those Outlook holds, each once.

    A backfill step imports one Graph page here (50 messages), not the batch of several pages it imports in
    production: the sandbox's mailboxes of a hundred messages then take several steps, each committed with its
    checkpoint, which is what these tests look at. ``TestBackfillBatches`` runs the production batch
    (``batch_messages = None``).
    """
    batch_messages = mailbox_module.BACKFILL_PAGE_SIZE

    def setUp(self):
        super().setUp()
        if self.batch_messages:
            self.patch(mailbox_module, 'BACKFILL_BATCH_MESSAGES', self.batch_messages)
        self.connect()
        self.assertEqual(self.connection.state, 'connected')
        self.backfill_cron = self.env.ref('epilot_outlook.ir_cron_outlook_backfill')
        self.delta_cron = self.env.ref('epilot_outlook.ir_cron_outlook_delta')
        self.graph_token = self.sandbox_token()

    # --- acting -----------------------------------------------------------------------------------------

    def add_address(self, email, days=30, inbox=None):
        """ The editor adds a shared mailbox through the wizard; returns the address. """
        wizard = self.env['epilot.outlook.address.wizard'].with_user(self.odoo_admin).create({
            'connection_id': self.connection.id, 'email': email, 'backfill_days': days,
            'shared_inbox_id': inbox.id if inbox else False,
        })
        action = wizard.action_outlook_add()
        return self.env['epilot.outlook.email.address'].browse(action['res_id'])

    def run_cron(self, cron):
        self.assertIs(cron.method_direct_trigger(), True, "the cron job logged an error")
        self.env.invalidate_all()

    def run_backfill(self, address, max_runs=20):
        for _run in range(max_runs):
            if address.backfill_id.state in ('done', 'cancelled', 'failed'):
                return
            address.backfill_id.retry_at = False
            self.run_cron(self.backfill_cron)
        self.fail("the backfill did not finish in %d runs (state %s)" % (max_runs, address.backfill_id.state))

    def run_delta(self, address=None):
        syncs = address.folder_sync_ids if address else self.env['epilot.outlook.folder.sync'].search([])
        syncs.write({'last_round_date': False, 'retry_at': False})
        self.run_cron(self.delta_cron)

    def deliver(self, mailbox=SUPPORT, **values):
        payload = {'mailbox': mailbox, 'from': values.pop('sender', 'customer@fabrikam.com'),
                   'subject': values.pop('subject', 'Where is my order?'),
                   'body_html': values.pop('body_html', '<p>Hello</p>'), **values}
        return self.sandbox.control('POST', '/mail/deliver', payload)

    def sandbox_token(self):
        return self.connection.sudo()._outlook_decrypt_secrets('access_token')['access_token']
