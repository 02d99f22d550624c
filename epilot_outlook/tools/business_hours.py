""" Business hours of a working-hours calendar (``resource.calendar``), for many spans at once.

Response times count the hours an inbox's team works: a mail received Friday evening and answered Monday
morning took the hour or two of Monday morning, not a weekend. Odoo's calendar knows the hours (attendances in
the calendar's time zone, public holidays as leaves) through ``_work_intervals_batch``; asking it once per
conversation would cost queries per imported e-mail. :class:`BusinessHours` asks it once per block of
``BLOCK`` days (cached by the process, ``models/resource_calendar.py``: each e-mail the mail queue sends is a
transaction of its own) and answers any number of spans and deadlines from those intervals in memory.
"""
from datetime import datetime, timedelta

BLOCK = timedelta(days=28)
EPOCH = datetime(2000, 1, 3)   # a Monday: blocks start on the same weekday
# How far a deadline is looked for before giving up (a calendar without working hours has none).
HORIZON_BLOCKS = 27   # about two years


class BusinessHours:
    """ The working intervals of one calendar, read in blocks of ``BLOCK`` days as they are needed.

    All datetimes in and out are naive UTC, as Odoo stores them. Without a calendar, every hour counts
    (elapsed time).

    :param calendar: A ``resource.calendar`` record, or an empty recordset (elapsed time).
    """

    def __init__(self, calendar):
        self.calendar = calendar
        self._blocks = {}   # block number -> [(start, stop)] in naive UTC, sorted

    @staticmethod
    def _number(moment):
        return (moment - EPOCH) // BLOCK

    def _intervals(self, number):
        """ The working intervals of block ``number`` (the calendar's, cached by the process:
        ``resource.calendar._outlook_work_intervals``). """
        if number not in self._blocks:
            start = EPOCH + BLOCK * number
            if not self.calendar:
                self._blocks[number] = [(start, start + BLOCK)]
            else:
                self._blocks[number] = list(self.calendar._outlook_work_intervals(start, start + BLOCK))
        return self._blocks[number]

    def hours_between(self, start, end):
        """ The working hours from ``start`` to ``end`` (0 when ``end`` is not after ``start``).

        :rtype: float
        """
        if not start or not end or end <= start:
            return 0.0
        seconds = 0.0
        for number in range(self._number(start), self._number(end) + 1):
            for begin, stop in self._intervals(number):
                low, high = max(begin, start), min(stop, end)
                if high > low:
                    seconds += (high - low).total_seconds()
        return seconds / 3600

    def add_hours(self, start, hours):
        """ The moment ``hours`` working hours after ``start`` (Odoo's ``plan_hours``, leaves counted), or
        ``None`` when the calendar has no such hours within about two years.

        :rtype: datetime or None
        """
        remaining = hours * 3600
        first = self._number(start)
        for number in range(first, first + HORIZON_BLOCKS):
            for begin, stop in self._intervals(number):
                if stop <= start:
                    continue
                begin = max(begin, start)
                span = (stop - begin).total_seconds()
                if remaining <= span:
                    return begin + timedelta(seconds=remaining)
                remaining -= span
        return None
