from odoo import models
from odoo.exceptions import UserError

from ..outlook_core.errors import NotFound, OutlookError, Unauthorized
from ..tools.explain import explain
from .epilot_outlook_connection_tokens import _tokens_refreshed_here


class EpilotOutlookConnection(models.Model):
    """ Disconnect: the Graph subscriptions deleted, the Outlook addresses removed (their shared inboxes and
    mail kept), the tokens wiped. """
    _inherit = 'epilot.outlook.connection'

    # === ACTION METHODS === #

    def action_outlook_disconnect(self):
        """ Disconnect the tenant: delete our Graph subscriptions, remove the Outlook addresses and the
        tokens. Shared inboxes and their mail stay. What was removed is logged in the chatter. """
        self.ensure_one()
        self.check_access('write')
        # Graph's listing holds every subscription Odoo knows (and any it lost track of): deleted there, once.
        deleted, remote_note = self._outlook_delete_graph_subscriptions()
        addresses = self.email_address_ids
        address_names = addresses.mapped('email')
        # Removing an address ends its sync (and its subscriptions in Odoo); its shared inbox and mail are kept.
        addresses.with_context(outlook_subscriptions_deleted=True).unlink()
        self._outlook_store_secrets({'access_token': None, 'refresh_token': None, 'identity': None})
        _tokens_refreshed_here.pop((self.env.cr.dbname, self.id), None)  # Other workers see the tokens gone.
        self.write({
            'state': 'disconnected',
            'access_token_expiry': False,
            'scopes_granted': False,
        })
        self.message_post(body=self.env._(
            "Disconnected. Removed Outlook addresses: %(addresses)s. Deleted Graph subscriptions: %(count)s. "
            "%(note)s Shared inboxes and their mail are kept.",
            addresses=', '.join(address_names) or self.env._("none"), count=deleted, note=remote_note,
        ))
        return True

    # === BUSINESS METHODS - GRAPH === #

    def _outlook_delete_graph_subscriptions(self):
        """ Delete every Graph subscription this app holds for the service account, tolerating 401/404.

        Graph lists exactly the subscriptions created by this app for the signed-in user, so none is
        missed, even one Odoo lost track of.

        :return: The number deleted, and a note for the chatter when some could not be.
        :rtype: tuple
        """
        if self.state != 'connected':
            return 0, self.env._("Graph subscriptions could not be deleted (the connection was not connected); "
                                 "Microsoft removes them when they expire, within 7 days.")

        def delete_all(client):
            count = 0
            subscription_ids = [item['id'] for page in client.iter_pages('subscriptions') for item in page.items]
            for subscription_id in subscription_ids:
                try:
                    client.delete('subscriptions/%s' % subscription_id)
                    count += 1
                except NotFound:
                    pass  # Already gone: expired or removed by Microsoft.
            return count

        # The tokens are deleted right after this, so a refresh needed here is used but not stored: storing it
        # (in a transaction of its own) would change the row this request is about to write, which PostgreSQL
        # then refuses to the request's older snapshot.
        token = {'access': None}
        client = self._outlook_graph_client(token_provider=lambda: token['access'])
        try:
            token['access'] = self._outlook_current_access_token() or self._outlook_refresh_with_retries().access_token
            try:
                return delete_all(client), ''
            except Unauthorized:
                token['access'] = self._outlook_refresh_with_retries().access_token
                return delete_all(client), ''
        except (OutlookError, UserError) as error:
            return 0, self.env._(
                "Graph subscriptions could not be deleted (%(error)s); Microsoft removes them when they expire, "
                "within 7 days.", error=explain(self.env, error))
