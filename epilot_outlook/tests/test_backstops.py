""" The backstops of exactly-once import and of Graph's throttling, each tested on its own (issue 18, item 10).

With many workers claiming work in parallel, exactly-once rests on the unique index of (inbox, immutable id): a
plain index in its place would let every other test pass. Retry-After is honoured by the backfill (tested in
test_mail_sync) and by the delta round (here).
"""
from datetime import timedelta

import psycopg2.errors

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..outlook_core import mapping
from .mail_sync_common import SUPPORT, OutlookMailSyncCase


@tagged('post_install', '-at_install')
class TestBackstops(OutlookMailSyncCase):

    def setUp(self):
        super().setUp()
        self.address = self.add_address(SUPPORT)
        self.run_backfill(self.address)

    def test_the_database_refuses_a_second_sync_record_of_an_item(self):
        """ Whatever the code does, PostgreSQL refuses a second sync record of one Outlook item in one inbox. """
        record = self.env['epilot.outlook.message'].search([('inbox_id', '=', self.address.shared_inbox_id.id)],
                                                             limit=1)
        self.assertTrue(record)
        row = {'inbox_id': record.inbox_id.id, 'address_id': self.address.id, 'mailbox_email': SUPPORT,
               'graph_id': record.graph_id, 'folder': record.folder, 'removed_in_outlook': False}
        with mute_logger('odoo.sql_db'), self.assertRaises(psycopg2.errors.UniqueViolation) as caught, \
                self.env.cr.savepoint():
            self.env['epilot.outlook.message']._outlook_insert([row])
        self.assertEqual(caught.exception.diag.constraint_name, 'epilot_outlook_message_graph_id_uniq')
        # In another inbox the same item is another record (the key is per inbox).
        other = self.env['epilot.shared.inbox'].create({'name': 'Other'})
        self.env['epilot.outlook.message']._outlook_insert([{**row, 'inbox_id': other.id}])

    def test_two_pages_of_the_same_mail_insert_their_keys_in_one_order(self):
        """ A backfill page (newest first) and a delta page (oldest first) of mail received in the same second
        insert conversations and sync records in the same order, whatever order their pages had: two workers
        importing them at once then wait on each other at the first shared key, never in a cycle (a deadlock,
        which CI met on 2026-12-06, instead of the unique violation TestTwoWorkers expects). """
        inbox = self.address.shared_inbox_id
        same_second = fields.Datetime.now().replace(microsecond=0)

        def page(tag):
            return [mapping.OutlookItem(
                graph_id='AAMk-order-%s-%s' % (tag, letter), folder='inbox',
                internet_message_id='<order-%s-%s@test>' % (tag, letter), conversation_id='conv-%s-%s' % (tag, letter),
                subject="Same second %s" % letter, from_=mapping.Address('Eve', 'eve@fabrikam.com'),
                to=(mapping.Address('', SUPPORT),), received_at=same_second, sent_at=same_second,
                is_read=False, body_html='<p>Hi</p>') for letter in 'dbeac']

        Record = self.env['epilot.outlook.message']
        for tag, reverse in (('newest-first', True), ('oldest-first', False)):
            items = sorted(page(tag), key=lambda item: item.graph_id, reverse=reverse)
            Record._outlook_import(self.address, items)
            records = Record.search([('inbox_id', '=', inbox.id), ('graph_id', 'like', 'AAMk-order-%s-' % tag)],
                                    order='id')
            self.assertEqual(records.mapped('graph_id'), sorted(records.mapped('graph_id')), tag)
            conversations = records.conversation_id.sorted('id')
            self.assertEqual(len(conversations), 5)
            self.assertEqual(conversations.mapped('graph_conversation_id'),
                             sorted(conversations.mapped('graph_conversation_id')), tag)

    def test_delta_honours_retry_after(self):
        """ A throttled delta round waits as long as Graph's Retry-After says, without sleeping in the worker,
        then goes on and delivers the mail. """
        delivered = self.deliver(subject='During the throttling')
        self.sandbox.control('POST', '/faults', {'graph': {'429': 50, 'retry_after': 45}})
        before = fields.Datetime.now()
        self.run_delta(self.address)
        syncs = self.address.folder_sync_ids
        for sync in syncs:
            self.assertTrue(sync.retry_at, "the round is rescheduled")
            self.assertGreaterEqual(sync.retry_at, before + timedelta(seconds=44))
            self.assertLessEqual(sync.retry_at, fields.Datetime.now() + timedelta(seconds=46))
        FolderSync = self.env['epilot.outlook.folder.sync']
        self.assertFalse(FolderSync._outlook_due() & syncs, "not due before Retry-After")
        self.assertFalse(self.env['epilot.outlook.message'].search([('graph_id', '=', delivered['immutable_id'])]))
        self.sandbox.control('POST', '/faults', {'graph': None})
        syncs.write({'retry_at': fields.Datetime.now() - timedelta(seconds=1)})
        self.assertEqual(FolderSync._outlook_due() & syncs, syncs, "due again once Retry-After passed")
        self.run_cron(self.delta_cron)
        self.assertEqual(len(self.env['epilot.outlook.message'].search([
            ('graph_id', '=', delivered['immutable_id'])])), 1)
        self.assertInSync(self.address)
