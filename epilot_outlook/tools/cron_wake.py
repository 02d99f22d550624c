""" Wake Odoo's cron workers when a trigger falls due.

Odoo runs a trigger set for the future (``ir.cron._trigger(at=...)``) only when a cron worker next looks, and an
idle worker looks once a minute (``SLEEP_INTERVAL`` in ``odoo/service/server.py``); only a trigger due *now* sends
the ``cron_trigger`` notification that wakes the workers at once. A delta lane that triggers itself for the next
folder's due time would then start up to a minute late, on top of the polling interval (bench_scale: 10 idle
mailboxes, 1-minute interval, mail visible after 102 s).

So the process that set such a trigger also sends that notification when the trigger falls due, from a timer:
Odoo's cron stays the scheduler (the trigger is an ordinary ``ir_cron_trigger`` row, any worker of any server may
take it), the timer only wakes the workers on time, the way ``ir.cron._notifydb`` does for a trigger due now. If the
process dies first, the worker's own minute poll still finds the trigger.
"""
import logging
import threading
import time

from odoo import sql_db
from odoo.addons.base.models.ir_cron import ODOO_NOTIFY_FUNCTION
from odoo.tools import SQL

_logger = logging.getLogger(__name__)

# The pending wake-up of each database in this process: {dbname: (monotonic due time, threading.Timer)}.
_timers = {}
_lock = threading.Lock()


def wake_at(dbname, delay):
    """ Notify ``dbname``'s cron workers in ``delay`` seconds, unless a wake-up at least as early is pending.

    :param str dbname: The database whose ``cron_trigger`` channel is notified.
    :param float delay: Seconds from now.
    """
    due = time.monotonic() + max(0.0, delay)
    with _lock:
        pending = _timers.get(dbname)
        if pending and pending[0] <= due and pending[1].is_alive():
            return
        if pending:
            pending[1].cancel()
        timer = threading.Timer(max(0.0, delay), _fire, args=(dbname, due))
        timer.daemon = True
        timer.name = 'epilot_outlook.cron_wake.%s' % dbname
        _timers[dbname] = (due, timer)
        timer.start()


def pending(dbname):
    """ Seconds until this process wakes ``dbname``'s cron workers, or ``None``. """
    with _lock:
        entry = _timers.get(dbname)
        return max(0.0, entry[0] - time.monotonic()) if entry and entry[1].is_alive() else None


def notify(dbname):
    """ Send the ``cron_trigger`` notification of ``dbname`` now, as ``ir.cron._notifydb`` does. """
    with sql_db.db_connect('postgres').cursor() as cr:
        cr.execute(SQL("SELECT %s('cron_trigger', %s)", SQL.identifier(ODOO_NOTIFY_FUNCTION), dbname))


def _fire(dbname, due):
    with _lock:
        if _timers.get(dbname, (None,))[0] == due:
            del _timers[dbname]
    try:
        notify(dbname)
    except Exception:  # noqa: BLE001 - the workers' own poll picks the trigger up a little later
        _logger.warning("Microsoft Outlook: could not wake the cron workers of %s", dbname, exc_info=True)
