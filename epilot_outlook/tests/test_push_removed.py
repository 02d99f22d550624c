from odoo.tests import tagged

from .mail_sync_common import SUPPORT
from .test_push import OutlookPushCase

NEW_PASSWORD = 'N3w-Pa55word!'


@tagged('post_install', '-at_install')
class TestPushRemovedByMicrosoft(OutlookPushCase):
    """ Microsoft removes the subscriptions of the service account when its password changes or is reset
    (docs/microsoft-graph.md §2.4.1): the addresses poll and say why, the editors are told once, and the
    subscriptions come back once the sign-in is known to work again, without losing or doubling mail. """

    def removal_notes(self):
        return self.connection.message_ids.filtered(lambda message: "removed Odoo's change notifications"
                                                    in (message.body or ''))

    def removed_and_polling(self, address, sandbox_answer):
        """ The sandbox removed both subscriptions; their lifecycle notifications reach the webhook, and the
        delta cron folds them in: the address polls, and says why. """
        subs = address.subscription_ids
        self.assertEqual(sorted(sandbox_answer['subscriptions_removed']), sorted(subs.mapped('graph_id')))
        self.drain()
        lifecycle = self.deliveries('lifecycle')['deliveries']
        self.assertEqual({entry['outcome'] for entry in lifecycle}, {'delivered'})
        self.assertEqual(sorted((n['subscriptionId'], n['lifecycleEvent']) for entry in lifecycle
                                for n in entry['payload']['value']),
                         sorted((graph_id, 'subscriptionRemoved') for graph_id in subs.mapped('graph_id')))
        self.run_push_round()
        self.assertEqual(set(subs.mapped('state')), {'removed'})
        self.assertEqual(set(subs.mapped('last_lifecycle_event')), {'subscriptionRemoved'})
        self.assertFalse(any(subs.mapped('graph_id')))
        self.assertEqual(address.sync_mode, 'polling')
        self.assertIn("removed the change notifications for this mailbox", address.push_reason)
        self.assertIn("password is changed or reset", address.push_reason)
        notes = self.removal_notes()
        self.assertEqual(len(notes), 1, "one note for the two subscriptions")
        self.assertIn(SUPPORT, notes.body)
        self.assertTrue(notes.partner_ids & self.odoo_admin.partner_id, "the editors are notified")
        # Not recreated with the token Odoo holds: nothing is due until the sign-in is confirmed.
        self.run_subscriptions()
        self.assertEqual(set(subs.mapped('state')), {'removed'})
        self.assertEqual(self.sandbox_subscriptions(), [])

    def back_on_push(self, address):
        subs = address.subscription_ids
        self.run_subscriptions()
        self.assertEqual(set(subs.mapped('state')), {'active'})
        self.assertEqual(address.sync_mode, 'webhook')
        self.assertFalse(address.push_reason)
        self.assertEqual(set(subs.mapped('graph_id')), {sub['id'] for sub in self.sandbox_subscriptions()})
        self.run_push_round()   # the round the recreation asked for
        self.deliver(subject="Pushed again")
        self.drain()
        self.run_push_round()
        self.assertIn("Pushed again", self.odoo_records(address, 'inbox').mapped('subject'))
        self.assertEqual(len(self.removal_notes()), 1)
        self.graph_token = self.sandbox_token()
        self.assertInSync(address)

    def test_password_reset_polls_with_the_reason_then_the_reconnect_subscribes_again(self):
        address = self.live_address()
        self.run_push_round()
        self.assertEqual(address.sync_mode, 'webhook')
        service_account = self.demo['service_account']
        answer = self.sandbox.control('POST', '/users/%s/reset-password' % service_account['id'],
                                      {'password': NEW_PASSWORD})
        self.removed_and_polling(address, answer)

        # The access token Odoo holds works until it expires: mail delivered meanwhile arrives by polling.
        self.deliver(subject="While polling")
        self.drain()
        self.run_delta(address)
        self.assertIn("While polling", self.odoo_records(address, 'inbox').mapped('subject'))

        # The next refresh meets the revoked sign-in (AADSTS50173): the connection needs a reconnect.
        with self.assertRaisesKeepingCommits(Exception):
            self.connection._outlook_refresh_tokens(force=True)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')
        self.assertIn('AADSTS50173', self.connection.last_error)
        self.assertIn("password", self.connection.last_error)
        self.assertEqual(address.sync_state, 'paused')
        self.deliver(subject="While signed out")
        self.run_subscriptions()
        self.assertEqual(self.sandbox_subscriptions(), [], "nothing created while the connection cannot sign in")

        # The service account signs in again, with its new password: subscribed again, and back on push.
        service_account['password'] = NEW_PASSWORD
        self.odoo_callback(self.microsoft_pages(self.click_connect(), 'service_account'))
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertEqual(set(address.subscription_ids.mapped('state')), {'pending'})
        self.back_on_push(address)
        self.assertIn("While signed out", self.odoo_records(address, 'inbox').mapped('subject'))

    def test_own_password_change_subscribes_again_after_the_next_refresh(self):
        address = self.live_address()
        self.run_push_round()
        answer = self.sandbox.control('POST', '/users/%s/change-password' % self.demo['service_account']['id'],
                                      {'password': NEW_PASSWORD})
        self.removed_and_polling(address, answer)
        self.deliver(subject="While polling")
        self.drain()
        self.run_delta(address)
        # The user's own change keeps a confidential client's refresh token: the refresh confirms the sign-in.
        self.connection._outlook_refresh_tokens(force=True)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.back_on_push(address)
        self.assertIn("While polling", self.odoo_records(address, 'inbox').mapped('subject'))
