""" Odoo's HTML sanitizer for the bodies of imported mail, in this process or in a helper process beside it.

Sanitizing is the largest single cost of importing mail: ``html_sanitize`` parses each body twice and walks it
in Python (about 40 % of a backfill's time in this process, bench/bench_backfill.py). A backfill reads the
next page while it writes the current one (``outlook_core/prefetch.py``); :class:`SanitizerPool` sanitizes
that next page's bodies meanwhile, in a process of its own, so they are ready when the page is written and the
work runs on another core than the worker's. A thread would not do: the sanitizer holds the GIL.

The sanitizer is Odoo's own, with the options of the field the body is stored in (:func:`field_sanitizer`):
the helper process runs the very function ``fields.Html`` runs, with the same arguments. Whatever goes wrong
there (no second core, a helper that died, a result that is late) costs time only: the body is then sanitized
here, as ``mail.message.create`` would.

The helper parses hostile HTML, so the worker believes nothing of it but text: it answers each request with one
line of JSON, the request's id and the sanitized bodies as strings (JSON cannot carry code, as a pickle can). An
answer of any other shape is refused like a dead helper's: the helper is killed and the page sanitized here.
What the worker sends it stays a pickle (the sanitizer, by reference, and the raw bodies): data of the worker's
own, which only the helper reads.
"""
import functools
import itertools
import json
import logging
import os
import pickle
import subprocess
import sys
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from contextlib import contextmanager

from markupsafe import Markup

from odoo.tools.mail import html_sanitize

_logger = logging.getLogger(__name__)

# Seconds after submitting a page's bodies to the helper by which they must be back, else they are sanitized
# in the worker.
RESULT_TIMEOUT_S = 60.0
# Seconds a stopping helper gets to finish before it is killed.
STOP_TIMEOUT_S = 5.0

# The helper: a fresh interpreter that imports what it is sent by name (``odoo.tools.mail.html_sanitize``),
# then answers each request ``(id, sanitize, bodies)`` (a pickle) with the line of JSON ``[id, [sanitized
# bodies]]`` (plain strings, ``null`` for an empty one; ASCII, so no line break inside) until its input ends.
# It is given Odoo's source directory and nothing else of the worker: no threads, no database connection.
_HELPER_SOURCE = """
import json, pickle, sys
sys.path.insert(0, sys.argv[1])
requests, answers = sys.stdin.buffer, sys.stdout.buffer
while True:
    try:
        request_id, sanitize, bodies = pickle.load(requests)
    except EOFError:
        break
    sanitized = [str(body) if body else None for body in map(sanitize, bodies)]
    answers.write(json.dumps([request_id, sanitized]).encode('ascii') + b'\\n')
    answers.flush()
"""


def field_sanitizer(field):
    """ The sanitizer ``field`` applies when a value is written to it, as one picklable callable.

    These are the arguments of :meth:`odoo.fields.Html._convert`, taken from the field. A field that lets some
    users skip sanitizing (``sanitize_overridable``) decides per user and record: it has no such callable.

    :param field: A sanitized ``fields.Html`` (``mail.message.body``).
    :return: ``html_sanitize`` with the field's options: it takes the raw HTML and returns ``Markup``.
    :rtype: functools.partial
    :raise ValueError: The field does not sanitize, or sanitizes per user.
    """
    if field.type != 'html' or not field.sanitize or field.sanitize_overridable:
        raise ValueError("%s: no fixed sanitizer" % field)
    return functools.partial(
        html_sanitize,
        silent=True,
        sanitize_tags=field.sanitize_tags,
        sanitize_attributes=field.sanitize_attributes,
        sanitize_style=field.sanitize_style,
        sanitize_form=field.sanitize_form,
        sanitize_conditional_comments=field.sanitize_conditional_comments,
        output_method=field.sanitize_output_method,
        strip_style=field.strip_style,
        strip_classes=field.strip_classes,
    )


class SanitizedBodies:
    """ The bodies of one page, being sanitized by the helper process or to be sanitized here. """

    def __init__(self, sanitize, bodies, future=None):
        self._sanitize, self._bodies, self._future = sanitize, bodies, future

    def result(self):
        """ The sanitized bodies, in the order given. When the helper does not deliver them (it died, was
        stopped, or is more than :data:`RESULT_TIMEOUT_S` late), the page is sanitized here.

        :rtype: list
        """
        if self._future is not None:
            future, self._future = self._future, None
            try:
                sanitized = future.result(timeout=RESULT_TIMEOUT_S)
                if len(sanitized) == len(self._bodies):
                    return sanitized
            except FutureTimeout:
                _logger.warning("The sanitizer helper process was late; the page is sanitized in the worker")
            except Exception as error:  # noqa: BLE001 - a dead or stopped helper costs time, never a body
                _logger.warning("The sanitizer helper process failed (%s); the page is sanitized in the worker",
                                error)
        return [self._sanitize(body) for body in self._bodies]


class SanitizerPool:
    """ One helper process sanitizing bodies, started on first use and stopped when its last user is done.

    Users hold it with :meth:`held` (a backfill's cron run); pages are submitted from any thread (the
    prefetch thread submits the page it just read) and answered in the order submitted.

    :param int processes: 1 for a helper process, 0 to sanitize in the caller's process only (default: 1 when
        the machine has more than one core).
    """

    def __init__(self, processes=None):
        self.processes = (1 if (os.cpu_count() or 1) > 1 else 0) if processes is None else min(processes, 1)
        self._helper = None
        self._users = 0
        self._given_up = False
        self._lock = threading.Lock()

    @contextmanager
    def held(self):
        """ The helper runs (started when first needed) at least until the block ends; the last user to leave
        stops it, so no process is left behind between two cron runs. """
        with self._lock:
            self._users += 1
        try:
            yield self
        finally:
            with self._lock:
                self._users -= 1
                helper = self._helper if not self._users else None
                if not self._users:
                    self._helper, self._given_up = None, False
            if helper is not None:
                helper.stop()

    def submit(self, sanitize, bodies):
        """ Start sanitizing ``bodies`` with ``sanitize`` in the helper, when the pool is held.

        :param sanitize: A picklable sanitizer (:func:`field_sanitizer`).
        :param list bodies: Raw HTML strings.
        :rtype: SanitizedBodies
        """
        helper = None
        if bodies and self.processes:
            with self._lock:
                if self._users and not self._given_up:
                    if self._helper is not None and not self._helper.alive() and not self._helper.answered:
                        # It died before answering anything: it cannot run here (another interpreter than
                        # Python's, a sandboxed process). Sanitize in the worker until the pool is let go.
                        _logger.warning("The sanitizer helper process cannot run; sanitizing in the worker")
                        self._given_up = True
                    elif self._helper is None or not self._helper.alive():
                        # First page, or the helper died (killed, out of memory): a new one.
                        self._helper = _Helper.start()
                    helper = self._helper if not self._given_up else None
        future = helper.submit(sanitize, bodies) if helper is not None else None
        return SanitizedBodies(sanitize, bodies, future)

    @property
    def helper_pid(self):
        """ The helper's process id, while it runs (for tests and logs). """
        helper = self._helper
        return helper.process.pid if helper is not None and helper.alive() else None


class _Helper:
    """ The helper process, its pipes, and the thread that reads its answers into futures. """

    def __init__(self, process):
        self.process = process
        self.answered = 0
        self._pending = {}   # request id -> (future, how many bodies were sent)
        self._ids = itertools.count()
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_answers, name='sanitizer-answers', daemon=True)
        self._reader.start()

    @classmethod
    def start(cls):
        """ :rtype: _Helper or None (it could not be started: the caller sanitizes itself) """
        # The directory holding the ``odoo`` package (odoo/tools/mail.py, three levels up).
        source_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(sys.modules[
            html_sanitize.__module__].__file__))))
        try:
            process = subprocess.Popen(
                [sys.executable, '-c', _HELPER_SOURCE, source_dir],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
                # It needs no secret: not the token keys (EPILOT_OUTLOOK_KEYS...) of the worker's environment.
                env={name: value for name, value in os.environ.items() if not name.startswith('EPILOT_OUTLOOK_')})
        except OSError as error:
            _logger.warning("Could not start the sanitizer helper process (%s); sanitizing in the worker", error)
            return None
        return cls(process)

    def alive(self):
        return self.process.poll() is None

    def submit(self, sanitize, bodies):
        future = Future()
        request_id = next(self._ids)
        self._pending[request_id] = (future, len(bodies))
        try:
            with self._write_lock:
                pickle.dump((request_id, sanitize, bodies), self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                self.process.stdin.flush()
        except (OSError, ValueError, pickle.PicklingError) as error:
            self._pending.pop(request_id, None)
            future.set_exception(error)
        return future

    def _read_answers(self):
        answers = self.process.stdout
        try:
            while (line := answers.readline()).endswith(b'\n'):   # else it ended, maybe in mid-answer
                request_id, sanitized = self._parse_answer(line)
                self.answered += 1
                future, _count = self._pending.pop(request_id)
                future.set_result(sanitized)
            ended = RuntimeError("the helper process ended (exit code %s)" % self.process.wait())
        except Exception as error:  # noqa: BLE001 - whatever it answered, it is not believed any more
            _logger.warning("The sanitizer helper process answered something else than sanitized bodies; it is "
                            "stopped and the worker sanitizes")
            self.process.kill()
            self.process.wait()
            ended = error
        for request_id in list(self._pending):
            future, _count = self._pending.pop(request_id, (None, 0))
            if future is not None and not future.done():
                future.set_exception(ended)

    def _parse_answer(self, line):
        """ One answer of the helper: the id of a pending request and as many bodies as it sent, each a string
        (a ``Markup``: the field's sanitizer made it) or ``None``; nothing else is accepted.

        :param bytes line: One line the helper wrote.
        :rtype: tuple
        :raise ValueError: Anything else.
        """
        answer = json.loads(line)
        if not (isinstance(answer, list) and len(answer) == 2 and isinstance(answer[1], list)):
            raise ValueError("not [id, bodies]")
        request_id, bodies = answer
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is None or len(bodies) != pending[1]:
            raise ValueError("not the answer to a request sent")
        if not all(body is None or isinstance(body, str) for body in bodies):
            raise ValueError("bodies that are not strings")
        return request_id, [Markup(body) if body else body for body in bodies]

    def stop(self):
        """ Close its input (it finishes what it was sent, then exits); kill it if it does not. """
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=STOP_TIMEOUT_S)
        self.process.stdout.close()
