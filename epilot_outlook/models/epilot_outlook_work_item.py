from datetime import timedelta

from odoo import api, fields, models

from ..outlook_core.errors import OutlookError, retry_delay
from ..tools.explain import explain


class EpilotOutlookWorkItem(models.AbstractModel):
    """ A piece of Outlook work the crons run a step at a time (a folder's delta, a backfill, a subscription):
    when its next step may run, and why the last one failed.

    A step never sleeps in its worker: after a failure the item is given a ``retry_at`` by the one backoff policy
    (:func:`outlook_core.errors.retry_delay`: Graph's ``Retry-After``, a jittered backoff for transient failures,
    the work's own delay otherwise), and its cron is triggered for then. Each inheriting model names its cron
    (:meth:`_outlook_cron`).
    """
    _name = 'epilot.outlook.work.item'
    _description = "Outlook Work Item"

    retry_at = fields.Datetime(
        string="Retry At", copy=False,
        help="No step before then: Graph asked to wait (Retry-After), or the last step failed.")
    last_error = fields.Text(string="Last Error", copy=False)

    @api.model
    def _outlook_cron(self):
        """ The ``ir.cron`` that runs these items' steps. """
        raise NotImplementedError

    def _outlook_schedule_retry(self, error, default, **values):
        """ Record ``error`` on these items (in words) and run their next step after
        :func:`~outlook_core.errors.retry_delay`, through their cron's trigger.

        :param Exception error: What stopped the step (``None``: a conflict with another worker; nothing to say).
        :param float default: Seconds to wait after an error that is not transient.
        :param values: More values to write (their own ``last_error`` included).
        :return: The time of the next try.
        :rtype: datetime.datetime
        """
        retry_at = fields.Datetime.now() + timedelta(seconds=retry_delay(error, default))
        values = {'retry_at': retry_at, **values}
        if isinstance(error, OutlookError) and 'last_error' not in values:
            values['last_error'] = explain(self.env, error)
        self.write(values)
        self._outlook_cron()._trigger(at=retry_at)
        return retry_at
