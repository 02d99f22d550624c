from datetime import timedelta
from urllib.parse import urlsplit

import psycopg2.errors

from odoo import fields, models
from odoo.tools import SQL

from ..outlook_core import const
from ..outlook_core.errors import ConnectionUnusable, Unauthorized
from ..outlook_core.graph import GraphClient, thread_session


class EpilotOutlookConnection(models.Model):
    """ The connection's Graph client: the one every Graph call of the addon goes through (refresh once on a
    401, then needs a reconnect), the usage it counts and the last successful call. """
    _inherit = 'epilot.outlook.connection'

    # === BUSINESS METHODS - GRAPH === #

    def _outlook_graph_client(self, token_provider=None, **client_options):
        """ Return the Graph client of this connection; it asks for a fresh access token on every call.

        :param callable token_provider: Where the client gets its token (default: the stored, refreshed one).
        :param client_options: Passed to :class:`GraphClient` (``max_wait``: a cron waits for no
            ``Retry-After``, it reschedules; ``slots`` defaults to the slots every process on the database
            shares).
        """
        self.ensure_one()
        self._outlook_check_endpoints()
        from ..tools.graph_slots import OutlookGraphSlots
        # Outlook's 4 requests per mailbox hold across every worker and server on the database, not per process.
        client_options.setdefault('slots', OutlookGraphSlots(self.env.cr.dbname))
        ca_bundle = self._outlook_ca_bundle()
        client_options.setdefault('session', thread_session(self.graph_endpoint, ca_bundle))
        # The configured endpoint was checked just above; nextLinks must stay on it.
        return GraphClient(
            self.graph_endpoint, token_provider or self._outlook_get_access_token, ca_bundle=ca_bundle,
            allowed_hosts=(*const.DEFAULT_GRAPH_HOSTS, urlsplit(self.graph_endpoint).netloc), **client_options,
        )

    def _outlook_call_graph(self, operation, **client_options):
        """ Run ``operation(graph_client)``; on 401 refresh once and retry, and on a second 401 (right after
        a fresh token) mark the connection as needing a reconnect.

        :param callable operation: Receives a :class:`GraphClient`; returns anything.
        :param client_options: For :meth:`_outlook_graph_client`.
        :return: What ``operation`` returned.
        """
        self.ensure_one()
        client = self._outlook_graph_client(**client_options)
        try:
            result = operation(client)
        except Unauthorized:
            self._outlook_refresh_tokens(force=True)
            try:
                result = operation(client)
            except Unauthorized as error:
                error.reason = 'token_refused_after_refresh'  # Not a stale token: reconnecting is needed.
                with self.env.registry.cursor() as cr:
                    self.with_env(self.env(cr=cr)).sudo()._outlook_mark_needs_reconnect(error)
                self.env.invalidate_all()
                raise ConnectionUnusable(str(error), cause=error) from None
        finally:
            # Counted whatever the outcome: throttled calls are what the figures are for.
            self.env['epilot.outlook.graph.usage'].sudo()._outlook_record(self, client.usage)
        self._outlook_touch_graph_success()
        return result

    def _outlook_touch_graph_success(self):
        """ Note a successful Graph call, at most once a minute.

        In a transaction of its own that never waits: it is only a health timestamp, the row may be locked by
        a refresh, and the caller's snapshot may predate a refresh that changed the row (REPEATABLE READ).
        """
        last = self.last_graph_call_date
        if last and fields.Datetime.now() - last < timedelta(minutes=1):
            return
        try:
            with self.env.registry.cursor() as cr:
                cr.execute(SQL(
                    "UPDATE %(table)s SET last_graph_call_date = %(now)s WHERE id IN ("
                    " SELECT id FROM %(table)s WHERE id = %(id)s FOR NO KEY UPDATE SKIP LOCKED)",
                    table=SQL.identifier(self._table), now=fields.Datetime.now(), id=self.id,
                ), log_exceptions=False)
        except psycopg2.errors.SerializationFailure:
            return  # Another transaction just wrote the row; the next call notes it.
        self.invalidate_recordset(['last_graph_call_date'])
