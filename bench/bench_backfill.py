"""Benchmark (not a test): the backfill of a shared mailbox into Odoo, end to end, against the sandbox.

Creates its own database from the template (``epilot_tmpl_*``, ``mail`` installed; see
scripts/run_odoo_tests.sh), installs ``epilot_outlook`` in-process, starts ``python -m m365_sandbox serve``,
connects the company's Outlook connection through the addon's own connect flow (admin consent, then the
service account's sign-in, both legs finished by ``_outlook_handle_oauth_callback`` as the controller does;
the sandbox's pages are driven by ``m365_sandbox.browser``), then measures in one run:

1. the backfill of N generated messages (``/control/mail/generate``; ~5 % inline images, ~12 % files) through
   the real path: ``_outlook_start_sync`` then the backfill cron's own method, committing after each page;
   beside Odoo's mail gateway (``mail.thread.message_process`` on a sample of the same messages as MIME,
   ``GET …/$value``, timed without the fetch, run first and rolled back so the Message-Ids stay new) and the
   ORM's ceiling (``mail.message.create`` of the same values in batches as large as the backfill's
   transactions, timed alone, rolled back);
2. Graph requests per 1,000 messages (the sandbox's ``/control/mail/counts``) and SQL queries per message
   (``odoo.sql_db.sql_counter``: every cursor of the process);
3. the same backfill at 1,000 / N / 50,000 messages (one mailbox each), and the peak RSS growth of the
   process during the 50,000 run (``--quick`` skips it);
4. two delta rounds after the backfill: the first (initial round over the window, all known) and one with
   nothing new.

It drops its database and filestore and stops the sandbox at the end.

    VENV/bin/python bench/bench_backfill.py [--quick] [--messages 10000] [--gateway-sample 1000] [--profile]
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.util
import io
import os
import pstats
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ODOO_SRC = os.environ.get('ODOO_SRC', '/opt/odoo19')
DATA_DIR = os.environ.get('ODOO_DATA_DIR', os.path.join(ROOT, 'var', 'odoo-data'))   # where make test keeps it
sys.path.insert(0, ROOT)
sys.path.insert(0, ODOO_SRC)
for _var in ('REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'):      # let Session.verify reach the sandbox CA
    os.environ.pop(_var, None)

import psutil  # noqa: E402
import requests  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from m365_sandbox.browser import sign_in  # noqa: E402

SUPPORT = 'support@contoso.onmicrosoft.com'
BILLING = 'billing@contoso.onmicrosoft.com'
SALES = 'sales@contoso.onmicrosoft.com'
SERVICE = 'svc-helpdesk@contoso.onmicrosoft.com'
BIG = 50_000
TARGETS = {'gateway': 20.0, 'ceiling': 0.8, 'requests': 50, 'memory_mb': 150}


def load_sandbox_process():
    """The test suite's ``SandboxProcess`` (a real ``python -m m365_sandbox serve``), loaded by path: importing
    it as ``odoo.addons.epilot_outlook.tests`` would import every test module."""
    path = os.path.join(ROOT, 'epilot_outlook', 'tests', 'sandbox_process.py')
    spec = importlib.util.spec_from_file_location('bench_sandbox_process', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SandboxProcess


def psql(sql, db='postgres'):
    return subprocess.run(['psql', '-d', db, '-tAc', sql], check=True, capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------------------------- measuring

class HttpCounter:
    """Counts the HTTP round trips the process makes to Graph (a ``$batch`` is one) and the time spent in
    them (request, the sandbox's work, reading the body)."""

    def __init__(self, host):
        self.host, self.count, self.seconds = host, 0, 0.0
        original = requests.Session.send
        counter = self

        def send(session, request, **kwargs):
            if counter.host not in request.url:
                return original(session, request, **kwargs)
            counter.count += 1
            started = time.perf_counter()
            try:
                response = original(session, request, **kwargs)
                response.content   # the body is read here: count its transfer too
                return response
            finally:
                counter.seconds += time.perf_counter() - started
        requests.Session.send = send


SAVEPOINT_NAME = re.compile(r'"[0-9a-f]{8}-[0-9a-f-]{27}"')     # a savepoint's uuid: one shape for them all


class SqlTimes:
    """Time spent in ``Cursor.execute`` by statement shape (its first 90 characters), while active."""

    def __init__(self, cursor_class):
        self.cursor_class, self.by_shape = cursor_class, {}

    def __enter__(self):
        self.original = original = self.cursor_class.execute
        by_shape = self.by_shape

        def execute(cursor, query, params=None, log_exceptions=True):
            started = time.perf_counter()
            try:
                return original(cursor, query, params, log_exceptions)
            finally:
                text = SAVEPOINT_NAME.sub('"…"', ' '.join(str(getattr(query, 'code', query)).split()))[:90]
                entry = by_shape.setdefault(text, [0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - started
        self.cursor_class.execute = execute
        return self

    def __exit__(self, *exc):
        self.cursor_class.execute = self.original

    def top(self, n=15):
        return sorted(self.by_shape.items(), key=lambda item: -item[1][1])[:n]


class CpuTimes:
    """CPU seconds (user + system) used while active by this process, its helper processes that ended (the
    sanitizer's, stopped at the end of each cron run), the sandbox and PostgreSQL: on a machine of 2 cores they
    share, so the end-to-end time depends on all of them."""

    def __init__(self, sandbox_pid):
        self.sandbox_pid = sandbox_pid

    @staticmethod
    def _seconds(process):
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0

    def _sample(self):
        postgres, self.by_kind = 0.0, {}
        for process in psutil.process_iter(['name', 'cmdline']):
            if process.info['name'] and process.info['name'].startswith('postgres'):
                seconds = self._seconds(process)
                postgres += seconds
                title = ' '.join(process.info['cmdline'] or [])
                kind = 'backend' if ' epilot_' in title else title.split(':')[-1].strip().split(' ')[0] or 'main'
                self.by_kind[kind] = self.by_kind.get(kind, 0.0) + seconds
        times = psutil.Process().cpu_times()
        return {'odoo': times.user + times.system, 'helpers': times.children_user + times.children_system,
                'sandbox': self._seconds(psutil.Process(self.sandbox_pid)), 'postgres': postgres}

    def __enter__(self):
        self.before = self._sample()
        self.kinds_before = self.by_kind
        return self

    def __exit__(self, *exc):
        after = self._sample()
        self.used = {name: after[name] - self.before[name] for name in after}
        self.used['postgres_by_kind'] = {kind: seconds - self.kinds_before.get(kind, 0.0)
                                         for kind, seconds in self.by_kind.items()
                                         if seconds - self.kinds_before.get(kind, 0.0) >= 0.05}


class Sampler:
    """Runs :meth:`sample` every ``every`` seconds in a thread while active (``with``)."""

    every = 0.05

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self):
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class RssPeak(Sampler):
    """Samples the process's RSS every 50 ms in a thread; ``growth_mb`` is the peak over the baseline. The
    sanitizer's helper process is sampled too (``helper_peak_mb``): it is memory the backfill uses."""

    def __init__(self, sandbox_pid):
        super().__init__()
        self.process = psutil.Process()
        self.sandbox_pid = sandbox_pid
        self.base = self.peak = self.process.memory_info().rss
        self.helper_peak = 0

    def sample(self):
        self.peak = max(self.peak, self.process.memory_info().rss)
        for child in self.process.children(recursive=True):
            if child.pid != self.sandbox_pid:
                with contextlib.suppress(psutil.Error):
                    self.helper_peak = max(self.helper_peak, child.memory_info().rss)

    @property
    def helper_peak_mb(self):
        return self.helper_peak / 2**20

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mb(self):
        return (self.peak - self.base) / 2**20


# --------------------------------------------------------------------------------------------- the bench

class Bench:

    def __init__(self, args):
        self.args = args
        self.db = 'epilot_bench_%d' % os.getpid()
        self.sandbox = None
        self.registry = None
        self.rows = []

    # --- set-up and clean-up ------------------------------------------------------------------------------

    def create_database(self):
        templates = psql("SELECT datname FROM pg_database WHERE datname ~ '^epilot_tmpl_[0-9a-f]+$' ORDER BY 1")
        if not templates:
            raise SystemExit('no template database epilot_tmpl_*: run `make test` once (scripts/run_odoo_tests.sh)')
        template = templates.split()[-1]
        subprocess.run(['createdb', '-T', template, self.db], check=True)
        source = os.path.join(DATA_DIR, 'filestore', template)
        if os.path.isdir(source):
            shutil.copytree(source, self.filestore, symlinks=True)
        return template

    @property
    def filestore(self):
        return os.path.join(DATA_DIR, 'filestore', self.db)

    def start_odoo(self):
        import odoo
        from odoo.tools import config
        os.environ['EPILOT_OUTLOOK_KEYS'] = Fernet.generate_key().decode()   # a key of this run only
        config.parse_config([
            '--addons-path=%s' % ','.join((os.path.join(ODOO_SRC, 'addons'), os.path.join(ODOO_SRC, 'odoo', 'addons'),
                                           ROOT)),
            '--data-dir=%s' % DATA_DIR, '--db-filter=^%s$' % self.db, '--log-level=warn', '--max-cron-threads=0',
            '--http-interface=127.0.0.1',
            '--without-demo=True',
        ], setup_logging=True)
        from odoo.modules.registry import Registry
        started = time.perf_counter()
        self.registry = Registry.new(self.db, install_modules=['epilot_outlook'])
        self.odoo = odoo
        return time.perf_counter() - started

    @contextlib.contextmanager
    def env(self, uid=None):
        """An environment on a new cursor, committed on success (as a cron's transaction)."""
        from odoo import SUPERUSER_ID, api
        with self.registry.cursor() as cr:
            yield api.Environment(cr, uid or SUPERUSER_ID, {})

    def cleanup(self):
        if self.registry is not None:
            from odoo.modules.registry import Registry
            from odoo.sql_db import close_db
            Registry.delete(self.db)
            close_db(self.db)
        subprocess.run(['dropdb', '--if-exists', self.db], check=False)
        shutil.rmtree(self.filestore, ignore_errors=True)
        if self.sandbox is not None:
            self.sandbox.stop()
            with contextlib.suppress(OSError):
                os.unlink(self.sandbox.log.name)
            # Without --workdir the sandbox keeps its CA in a temporary directory of its own and leaves it.
            workdir = os.path.dirname(self.sandbox.info['ca_bundle'])
            if os.path.basename(workdir).startswith('m365-sandbox-'):
                shutil.rmtree(workdir, ignore_errors=True)

    # --- the connection -------------------------------------------------------------------------------------

    def connect(self):
        """The admin clicks Connect; the tenant admin consents, then the service account signs in."""
        info = self.sandbox.info
        with self.env() as env:
            admin = env.ref('base.user_admin')
            env['ir.config_parameter'].set_param('web.base.url', 'http://127.0.0.1:8069')
            connection = env['epilot.outlook.connection'].search([('company_id', '=', env.company.id)], limit=1)
            connection = connection or env['epilot.outlook.connection'].create({})
            redirect_uri = connection.redirect_uri
        self.demo = self.sandbox.reset_and_seed([redirect_uri])
        # The service account gets Full Access to sales@ too: one fresh mailbox per backfill size.
        self.sandbox.control('POST', '/permissions', {'mailbox': SALES, 'user': SERVICE, 'full_access': True,
                                                      'send_as': True, 'send_on_behalf': False})
        with self.env() as env:
            self.sandbox.allow_in(env)   # a system administrator allows the sandbox's hosts
            connection = env['epilot.outlook.connection'].browse(connection.id)
            connection.write({
                'client_id': self.demo['client_id'], 'client_secret': self.demo['client_secret'],
                'authority_host': info['authority_base_url'], 'graph_endpoint': info['graph_base_url'],
                'ca_bundle': info['ca_bundle'], 'service_account': self.demo['service_account']['username'],
            })
            self.connection_id, self.admin_id = connection.id, admin.id
        browser = requests.Session()
        browser.verify, browser.trust_env = info['ca_bundle'], False
        with browser:
            with self.env(self.admin_id) as env:
                url = env['epilot.outlook.connection'].browse(self.connection_id).action_outlook_connect()['url']
            for who in ('admin', 'service_account'):
                account = self.demo[who]
                _location, params = sign_in(browser, url, account['username'], account['password'])
                with self.env(self.admin_id) as env:
                    _connection, url = env['epilot.outlook.connection']._outlook_handle_oauth_callback(
                        params.get('state'), params)
        with self.env() as env:
            state = env['epilot.outlook.connection'].browse(self.connection_id).state
        assert state == 'connected', state

    def start_connected(self):
        """What every Odoo bench starts with: its database from the template with the modules installed in-process,
        the sandbox, and the company's connection connected through the addon's connect flow."""
        template = self.create_database()
        install_s = self.start_odoo()
        print(f"database {self.db} from {template}; modules installed in-process in {install_s:.1f} s")
        self.sandbox = load_sandbox_process()()
        self.connect()
        print("sandbox up; connection connected through the addon's connect flow")

    def graph_token(self):
        with self.env() as env:
            connection = env['epilot.outlook.connection'].browse(self.connection_id)
            return connection._outlook_decrypt_secrets('access_token')['access_token']

    def mail_counts(self, mailbox):
        return self.sandbox.control('GET', '/mail/counts')['mailboxes'].get(mailbox, 0)

    # --- 1a. Odoo's mail gateway --------------------------------------------------------------------------

    def gateway(self, mailbox, sample):
        """``message_process`` on the newest ``sample`` messages as MIME, rolled back afterwards."""
        http = self.sandbox.http
        headers = {'Authorization': 'Bearer %s' % self.graph_token(), 'Prefer': 'IdType="ImmutableId"'}
        base = '%s/users/%s' % (self.sandbox.info['graph_base_url'], mailbox)
        ids, url = [], base + '/mailFolders/inbox/messages?$select=id&$top=1000&$orderby=receivedDateTime desc'
        while url and len(ids) < sample:
            body = http.get(url, headers=headers, timeout=60).json()
            ids += [item['id'] for item in body['value']]
            url = body.get('@odata.nextLink')
        raws = []
        for graph_id in ids[:sample]:
            response = http.get('%s/messages/%s/$value' % (base, graph_id), headers=headers, timeout=60)
            response.raise_for_status()
            raws.append(response.content)
        raws.reverse()   # oldest first, as a mail server delivers them (replies find their thread)
        with self.env() as env:
            inbox = env['epilot.shared.inbox'].create({'name': 'Gateway', 'email': 'gateway@example.com'})
            Thread = env['mail.thread'].with_context(mail_create_nolog=True)
            queries = self.odoo.sql_db.sql_counter
            started = time.perf_counter()
            for raw in raws:
                Thread.message_process('epilot.shared.conversation', raw, custom_values={'inbox_id': inbox.id})
            env.flush_all()
            seconds = time.perf_counter() - started
            queries = self.odoo.sql_db.sql_counter - queries
            made = env['mail.message'].search_count([('model', '=', 'epilot.shared.conversation'),
                                                     ('message_type', '=', 'email')])
            env.cr.rollback()
        assert made == len(raws), (made, len(raws))
        return {'messages': len(raws), 'seconds': seconds, 'queries': queries}

    # --- 1b/3. our backfill ---------------------------------------------------------------------------------

    def backfill(self, mailbox, profile=False):
        """Add the address, start its sync, and run the backfill cron's method until the backfill is done."""
        requests_before = self.mail_counts(mailbox)
        http_before, http_seconds = self.http.count, self.http.seconds
        queries = self.odoo.sql_db.sql_counter
        profiler = cProfile.Profile() if profile else None
        sql_times = SqlTimes(self.odoo.sql_db.Cursor) if profile else contextlib.nullcontext()
        waits = runs = 0
        with self.env() as env:
            bus_mark = env['bus.bus'].sudo().search([], order='id desc', limit=1).id or 0
        cpu = CpuTimes(self.sandbox.process.pid).__enter__()
        started = time.perf_counter()
        if profiler:
            sql_times.__enter__()
            profiler.enable()
        with self.env(self.admin_id) as env:
            address = env['epilot.outlook.email.address'].create({
                'connection_id': self.connection_id, 'email': mailbox, 'backfill_days': 31})
            address._outlook_start_sync()
            address_id, backfill_id = address.id, address.backfill_id.id
        while True:
            with self.env() as env:
                backfill = env['epilot.outlook.backfill'].browse(backfill_id)
                if backfill.state in ('done', 'cancelled', 'failed'):
                    break
                if backfill.retry_at:    # throttled (Retry-After) or a failed step: wait as the cron would
                    waits += 1
                    delay = (backfill.retry_at - self.odoo.fields.Datetime.now()).total_seconds()
                    assert waits < 100, backfill.last_error
                    env.cr.commit()
                    time.sleep(max(0.0, min(delay, 30.0)))
                    backfill.retry_at = False
                    continue
            with self.env() as env:   # what ir.cron runs, as the cron's user (root)
                env['epilot.outlook.backfill']._cron_outlook_backfill()
                runs += 1
        seconds = time.perf_counter() - started
        cpu.__exit__(None, None, None)
        if profiler:
            profiler.disable()
            sql_times.__exit__(None, None, None)
            profiler.sql_times = sql_times
        queries = self.odoo.sql_db.sql_counter - queries
        with self.env() as env:
            backfill = env['epilot.outlook.backfill'].browse(backfill_id)
            address = env['epilot.outlook.email.address'].browse(address_id)
            records = env['epilot.outlook.message'].search_count([('inbox_id', '=', address.shared_inbox_id.id)])
            files = env['ir.attachment'].search_count([('res_model', '=', 'epilot.shared.conversation'), (
                'res_id', 'in', env['epilot.shared.conversation'].search([
                    ('inbox_id', '=', address.shared_inbox_id.id)]).ids)])
            result = {'mailbox': mailbox, 'address_id': address_id, 'inbox_id': address.shared_inbox_id.id,
                      'state': backfill.state, 'sync_state': address.sync_state, 'total': backfill.total,
                      'done': backfill.done, 'imported': backfill.imported, 'records': records,
                      'attachments': files, 'seconds': seconds, 'queries': queries, 'waits': waits,
                      'cron_runs': runs, 'requests': self.mail_counts(mailbox) - requests_before,
                      'round_trips': self.http.count - http_before, 'profile': profiler,
                      'http_seconds': self.http.seconds - http_seconds, 'cpu': cpu.used,
                      'bus': self.bus_per_recipient(env, bus_mark)}
        assert result['state'] == 'done' and result['records'] == result['total'], result
        return result

    @staticmethod
    def bus_per_recipient(env, mark):
        """The live screens' bus notifications sent since ``mark`` (issue 19): per notification type, the most any
        one user received. An editor gets one ``epilot_outlook/addresses`` per committed step (the backfill's
        progress) and should get one ``epilot_outlook/conversations`` per step that imported mail, however many
        e-mails it held."""
        counts = {}
        for row in env['bus.bus'].sudo().search_read([('id', '>', mark)], ['channel', 'message']):
            kind = re.search(r'"type":\s*"(epilot_outlook/[a-z]+)"', row['message'] or '')
            if kind:
                per_user = counts.setdefault(kind.group(1), {})
                per_user[row['channel']] = per_user.get(row['channel'], 0) + 1
        return {kind: max(per_user.values()) for kind, per_user in counts.items()}

    # --- 1c. the ORM's ceiling ------------------------------------------------------------------------------

    def graph_bodies(self, address_id):
        """The HTML bodies as Graph sends them, by immutable id (read again from the sandbox, not timed): the
        ceiling must sanitize the same input as the import, not the already sanitized copy Odoo stored."""
        from odoo.addons.epilot_outlook.outlook_core import mapping
        from odoo.addons.epilot_outlook.outlook_core.mailbox import MailboxReader
        bodies = {}
        with self.env() as env:
            address = env['epilot.outlook.email.address'].browse(address_id)

            def read(reader):
                for folder in mapping.FOLDERS:
                    link = None
                    while True:
                        page = reader.backfill_page(folder, address.window_start, link)
                        for message in mapping.map_messages(page.items, folder)[0]:
                            bodies[message.graph_id] = message.body_html
                        if not (link := page.next_link):
                            break
            address.connection_id._outlook_call_graph(lambda client: read(MailboxReader(client, address.email)))
        return bodies

    @staticmethod
    def batch_size():
        """Messages the backfill imports per transaction: the ceiling creates batches of the same size."""
        from odoo.addons.epilot_outlook.outlook_core.mailbox import BACKFILL_BATCH_MESSAGES
        return BACKFILL_BATCH_MESSAGES

    def ceiling(self, inbox_id, raw_bodies, with_attachments):
        """``mail.message.create`` of the values the backfill created, in batches of the backfill's size
        (:meth:`batch_size`), rolled back: the same fields, with the body as Graph sent it (``raw_bodies``), so
        the sanitizer sees the same input.

        ``with_attachments``: also create each message's files (``ir.attachment``, same bytes, same context).
        """
        from markupsafe import Markup
        from odoo.fields import Command
        fields_ = ['model', 'res_id', 'message_type', 'subtype_id', 'subject', 'body', 'author_id', 'email_from',
                   'incoming_email_to', 'incoming_email_cc', 'reply_to', 'message_id', 'date']
        with self.env() as env:
            records = env['epilot.outlook.message'].search([('inbox_id', '=', inbox_id)], order='id')
            values, files = [], []
            for record in records:
                message = record.mail_message_id
                vals = {}
                for name in fields_:
                    value = message[name]
                    vals[name] = value.id if hasattr(value, '_name') else value
                vals['body'] = Markup(raw_bodies.get(record.graph_id, ''))
                values.append(vals)
                files.append([{'name': att.name, 'raw': att.raw, 'mimetype': att.mimetype, 'res_model': att.res_model,
                               'res_id': att.res_id, 'access_token': att.access_token}
                              for att in message.attachment_ids] if with_attachments else [])
            env.invalidate_all()
            ctx_env = env(context=dict(env.context, mail_create_nolog=True, mail_create_nosubscribe=True,
                                       mail_notrack=True, tracking_disable=True, mail_auto_subscribe_no_notify=True))
            Attachment = env['ir.attachment'].sudo().with_context(attachments_mime_plainxml=True,
                                                                 image_no_postprocess=True)
            queries = self.odoo.sql_db.sql_counter
            started = time.perf_counter()
            size = self.batch_size()
            for start in range(0, len(values), size):
                batch, batch_files = values[start:start + size], files[start:start + size]
                flat = [file for message_files in batch_files for file in message_files]
                created = iter(Attachment.create(flat)) if flat else iter(())
                for vals, message_files in zip(batch, batch_files):
                    vals['attachment_ids'] = [Command.set([next(created).id for _file in message_files])]
                ctx_env['mail.message'].create(batch)
                env.flush_all()
            seconds = time.perf_counter() - started
            queries = self.odoo.sql_db.sql_counter - queries
            env.cr.rollback()
        return {'messages': len(values), 'seconds': seconds, 'queries': queries}

    # --- 4. delta -------------------------------------------------------------------------------------------

    def delta_round(self, address_id):
        """One delta round of each folder of the address (the delta cron's step, until its delta link)."""
        with self.env() as env:
            mailbox = env['epilot.outlook.email.address'].browse(address_id).email
            sync_ids = env['epilot.outlook.email.address'].browse(address_id).folder_sync_ids.ids
            count = env['epilot.outlook.message'].search_count([])
        requests_before, http_before = self.mail_counts(mailbox), self.http.count
        queries = self.odoo.sql_db.sql_counter
        started = time.perf_counter()
        for sync_id in sync_ids:
            for _turn in range(1000):
                with self.env() as env:
                    sync = env['epilot.outlook.folder.sync'].browse(sync_id)
                    done = sync._outlook_run_round()
                    assert done is not None, sync.last_error
                if done:
                    break
        seconds, queries = time.perf_counter() - started, self.odoo.sql_db.sql_counter - queries
        with self.env() as env:
            imported = env['epilot.outlook.message'].search_count([]) - count
        return {'seconds': seconds, 'requests': self.mail_counts(mailbox) - requests_before,
                'round_trips': self.http.count - http_before, 'queries': queries, 'imported': imported}

    # --- the run --------------------------------------------------------------------------------------------

    def generate(self, mailbox, count, seed):
        started = time.perf_counter()
        self.sandbox.control('POST', '/mail/generate', {'mailbox': mailbox, 'count': count, 'days': 30,
                                                        'seed': seed})
        return time.perf_counter() - started

    def run(self):
        args = self.args
        self.start_connected()
        self.http = HttpCounter(self.sandbox.info['graph_base_url'].rsplit('/v1.0', 1)[0])

        # 1. the main size: gateway first (its Message-Ids must be new to Odoo), then ours, then the ceiling.
        gen = self.generate(SUPPORT, args.messages, seed=1)
        print(f"generated {args.messages:,} messages in {SUPPORT} in {gen:.1f} s")
        gateway = self.gateway(SUPPORT, args.gateway_sample)
        main = self.backfill(SUPPORT, profile=args.profile)
        raw_bodies = self.graph_bodies(main['address_id'])
        ceiling = self.ceiling(main['inbox_id'], raw_bodies, with_attachments=False)
        ceiling_files = self.ceiling(main['inbox_id'], raw_bodies, with_attachments=True)
        delta_first = self.delta_round(main['address_id'])
        delta_idle = self.delta_round(main['address_id'])

        # 3. the other sizes, one fresh mailbox each.
        scale = [main]
        self.generate(BILLING, 1000, seed=2)
        scale.append(self.backfill(BILLING))
        peak = None
        if not args.quick:
            self.generate(SALES, BIG, seed=3)
            with RssPeak(self.sandbox.process.pid) as peak:
                scale.append(self.backfill(SALES))

        self.report(gateway, main, ceiling, ceiling_files, delta_first, delta_idle, scale, peak)
        if main['profile']:
            self.print_profile(main['profile'])

    # --- output ---------------------------------------------------------------------------------------------

    def report(self, gateway, main, ceiling, ceiling_files, delta_first, delta_idle, scale, peak):
        rate = lambda result: result['done'] / result['seconds'] if 'done' in result else (  # noqa: E731
            result['messages'] / result['seconds'])
        ours, gw, ceil, ceil_files = rate(main), rate(gateway), rate(ceiling), rate(ceiling_files)
        ok = lambda good: 'ok' if good else 'MISSED'  # noqa: E731
        per_k = 1000 * main['requests'] / main['done']
        line = '-' * 100
        print()
        print(line)
        print(f"Backfill of {main['done']:,} messages ({main['attachments']:,} attachments) into Odoo, "
              f"{self.db}, {os.cpu_count()} cores")
        print(line)
        print(f"{'path':58s} {'msg':>7s} {'seconds':>8s} {'msg/s':>8s} {'queries/msg':>12s}")
        for name, result, value in (
                ("ours: _outlook_start_sync + backfill cron, end to end", main, ours),
                ("Odoo's gateway: message_process (MIME, no fetch)", gateway, gw),
                ("ORM ceiling: mail.message.create, batches of %d" % self.batch_size(), ceiling, ceil),
                ("ORM ceiling + ir.attachment.create of the same files", ceiling_files, ceil_files)):
            count = result.get('done', result.get('messages'))
            print(f"{name:58s} {count:>7,} {result['seconds']:>8.1f} {value:>8.0f} "
                  f"{result['queries'] / count:>12.1f}")
        print(f"ours / gateway  {ours / gw:6.1f}x   (target >= {TARGETS['gateway']:.0f}x)  "
              f"{ok(ours / gw >= TARGETS['gateway'])}")
        print(f"ours / ceiling  {ours / ceil:6.2f}x   (target >= {TARGETS['ceiling']}x)  "
              f"{ok(ours / ceil >= TARGETS['ceiling'])};  ours / (ceiling + files) {ours / ceil_files:.2f}x")
        print(line)
        print(f"Graph requests for {main['done']:,} messages: {main['requests']:,} ({per_k:.1f} per 1,000; target "
              f"<= {TARGETS['requests']}) {ok(per_k <= TARGETS['requests'])};  HTTP round trips: "
              f"{main['round_trips']:,};  cron runs: {main['cron_runs']}, throttle waits: {main['waits']}")
        bus = main['bus']
        print(f"Bus notifications to one editor: {bus.get('epilot_outlook/conversations', 0)} for the conversations, "
              f"{bus.get('epilot_outlook/addresses', 0)} for the address (one per committed step), "
              f"{main['done'] / max(bus.get('epilot_outlook/addresses', 1), 1):.0f} messages per step")
        print(f"SQL queries: {main['queries']:,} = {main['queries'] / main['done']:.1f} per message;  "
              f"time waiting on Graph (HTTP + sandbox): {main['http_seconds']:.1f} s of {main['seconds']:.1f} s, "
              f"Odoo's side alone: {(main['done'] / (main['seconds'] - main['http_seconds'])):.0f} msg/s")
        cpu = main['cpu']
        print(f"CPU seconds during it ({os.cpu_count()} cores shared): Odoo {cpu['odoo']:.1f}, its sanitizer "
              f"helper {cpu['helpers']:.1f}, sandbox {cpu['sandbox']:.1f}, PostgreSQL {cpu['postgres']:.1f} ("
              + ', '.join(f'{kind} {seconds:.1f}' for kind, seconds in sorted(cpu['postgres_by_kind'].items())) + ')')
        print(line)
        print(f"{'backfill size':>14s} {'seconds':>8s} {'ms/msg':>8s} {'msg/s':>8s} {'req/1k':>8s} "
              f"{'queries/msg':>12s}")
        for result in sorted(scale, key=lambda result: result['done']):
            print(f"{result['done']:>14,} {result['seconds']:>8.1f} {1000 * result['seconds'] / result['done']:>8.2f} "
                  f"{result['done'] / result['seconds']:>8.0f} {1000 * result['requests'] / result['done']:>8.1f} "
                  f"{result['queries'] / result['done']:>12.1f}")
        if peak is not None:
            print(f"peak RSS growth during the {BIG:,} run: {peak.growth_mb:.0f} MB (target <= "
                  f"{TARGETS['memory_mb']} MB) {ok(peak.growth_mb <= TARGETS['memory_mb'])};  the sanitizer's "
                  f"helper process beside it: {peak.helper_peak_mb:.0f} MB at most")
        else:
            print(f"--quick: the {BIG:,} run and its memory figure were skipped")
        print(line)
        for name, delta in (("delta, first round (initial sync over the window)", delta_first),
                            ("delta, nothing new", delta_idle)):
            print(f"{name:52s} {delta['requests']:>4} Graph requests, {delta['round_trips']:>4} round trips, "
                  f"{1000 * delta['seconds']:>7.0f} ms, {delta['queries']:>5} queries, {delta['imported']} imported")
        print(line)

    def print_profile(self, profiler):
        if self.args.profile_out:
            profiler.dump_stats(self.args.profile_out)
        for sort in ('cumulative', 'tottime'):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(40)
            print('\n'.join(line for line in out.getvalue().splitlines() if line.strip()))
        total = sum(seconds for _count, seconds in profiler.sql_times.by_shape.values())
        print(f"SQL: {total:.1f} s in Cursor.execute; by statement:")
        for text, (count, seconds) in profiler.sql_times.top():
            print(f"{seconds:7.2f} s {count:6d}x  {text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--messages', type=int, default=10_000, help='the main backfill size (default 10,000)')
    parser.add_argument('--gateway-sample', type=int, default=1000, help='messages through message_process')
    parser.add_argument('--quick', action='store_true', help='skip the 50,000 run')
    parser.add_argument('--profile', action='store_true', help='cProfile the main backfill and print the top')
    parser.add_argument('--profile-out', help='with --profile: also write the cProfile stats to this file')
    args = parser.parse_args()
    bench = Bench(args)
    try:
        bench.run()
    finally:
        bench.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
