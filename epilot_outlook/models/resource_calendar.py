from pytz import utc

from odoo import api, models, tools


class ResourceCalendar(models.Model):
    """ The working intervals response times count (``tools/business_hours.py``), cached by the process.

    Response times are recomputed in the transaction that changes them: each e-mail the mail queue sends is one
    (its commit clears the ORM's cache), and reading the calendar, its attendances and its public holidays again
    took four queries per e-mail sent (issue 18, bench/bench_send.py). The intervals are kept in Odoo's
    ``ormcache`` instead, which every worker clears when a calendar, an attendance or a public holiday (a leave
    of no resource) changes: the hooks below, as Odoo does for its other cached configuration.
    """
    _inherit = 'resource.calendar'

    @tools.ormcache('self.id', 'start', 'stop')
    def _outlook_work_intervals(self, start, stop):
        """ The working intervals of this calendar from ``start`` to ``stop``, public holidays left out (Odoo's
        ``_work_intervals_batch`` for no resource, as superuser: the same for whoever asks).

        :param datetime start: Naive UTC.
        :param datetime stop: Naive UTC.
        :return: ``((begin, end), ...)`` in naive UTC, sorted.
        :rtype: tuple
        """
        self.ensure_one()
        intervals = self.sudo()._work_intervals_batch(utc.localize(start), utc.localize(stop))[False]
        return tuple((begin.astimezone(utc).replace(tzinfo=None), end.astimezone(utc).replace(tzinfo=None))
                     for begin, end, _meta in intervals)

    def write(self, vals):
        self.env.registry.clear_cache()   # its time zone, its attendances (a deleted calendar is asked no more)
        return super().write(vals)


class ResourceCalendarAttendance(models.Model):
    _inherit = 'resource.calendar.attendance'

    @api.model_create_multi
    def create(self, vals_list):
        self.env.registry.clear_cache()   # ResourceCalendar._outlook_work_intervals
        return super().create(vals_list)

    def write(self, vals):
        self.env.registry.clear_cache()
        return super().write(vals)

    def unlink(self):
        self.env.registry.clear_cache()
        return super().unlink()


class ResourceCalendarLeaves(models.Model):
    _inherit = 'resource.calendar.leaves'

    @api.model_create_multi
    def create(self, vals_list):
        leaves = super().create(vals_list)
        leaves._outlook_clear_intervals()
        return leaves

    def write(self, vals):
        self._outlook_clear_intervals()   # a public holiday that becomes someone's time off
        result = super().write(vals)
        self._outlook_clear_intervals()
        return result

    def unlink(self):
        self._outlook_clear_intervals()
        return super().unlink()

    def _outlook_clear_intervals(self):
        """ A public holiday (a leave of no resource) changed: the cached working intervals of the calendars
        (``ResourceCalendar._outlook_work_intervals``) are cleared in every worker. Someone's time off counts
        in no inbox's hours and clears nothing. """
        if any(not leave.resource_id for leave in self):
            self.env.registry.clear_cache()
