"""Benchmark (not a test): what an agent waits for when opening a shared inbox and a conversation.

Creates its own database from the template (``epilot_tmpl_*``; see scripts/run_odoo_tests.sh), installs
``epilot_outlook`` in-process, and fills two inboxes through the real import
(``epilot.outlook.message._outlook_import``, the code backfill and delta run, fed mapped messages instead of
Graph pages): one of 1,000 conversations and one of N (10,000 by default), each conversation with one received
e-mail of ~2 kB (a third with a reply sent), plus one conversation of 200 e-mails. Then, as an agent who is a
member of both (record rules apply), it measures each screen's server side the way the web client calls it:

- the inbox's list: ``web_search_read`` with the list view's fields, 80 rows and the count, *Not Closed*;
- the same with the *Unread* filter, and with a search on the e-mails' text (the body search);
- the menu's unread counts (``get_inbox_menu_counters``);
- a conversation of 200 e-mails: the form's ``web_read`` and ``/mail/thread/messages`` (``_message_fetch`` of the
  first 30 and their ``Store`` data, as the controller does), and its mark-as-read.

For each: SQL queries (``odoo.sql_db.sql_counter``) and the median server time of 7 runs (after one warm-up run), at 1,000 and at N
conversations, and their ratio: opening an inbox must be flat in its size. The body search is also timed
without its trigram index, to show what the index buys.

    VENV/bin/python bench/bench_inbox.py [--conversations 10000]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_backfill  # noqa: E402

SMALL = 1_000
THREAD = 200
PAGE = 200
RUNS = 7
WORDS = ('order invoice parcel refund delivery account password printer contract address payment reminder '
         'meeting tracking warranty damaged missing update cancel subscription').split()
LIST_SPEC = {name: {} for name in (
    'is_unread', 'last_message_date', 'name', 'correspondent_email', 'email_count', 'unread_count', 'state')}
LIST_SPEC.update({
    'partner_id': {'fields': {'display_name': {}}},
    'inbox_id': {'fields': {'display_name': {}}},
    'user_id': {'fields': {'display_name': {}}},
})
FORM_SPEC = {name: {} for name in (
    'name', 'state', 'is_unread', 'correspondent_email', 'first_message_date', 'last_message_date', 'email_count')}


class Bench(bench_backfill.Bench):
    """Reuses the backfill bench's database, in-process Odoo and clean-up (no sandbox here)."""

    def __init__(self, args):
        super().__init__(args)
        self.db = 'epilot_bench_inbox_%d' % os.getpid()

    # --- data -----------------------------------------------------------------------------------------------

    def setup_inboxes(self):
        from odoo.tests import new_test_user
        with self.env() as env:
            agent = new_test_user(env, 'bench_agent', groups='epilot_outlook.group_agent')
            connection = env['epilot.outlook.connection'].search([('company_id', '=', env.company.id)]) or \
                env['epilot.outlook.connection'].create({'company_id': env.company.id})
            made = {}
            for key, email in (('small', 'small@contoso.com'), ('big', 'big@contoso.com')):
                inbox = env['epilot.shared.inbox'].create({
                    'name': key.title(), 'email': email, 'member_user_ids': [(4, agent.id)]})
                address = env['epilot.outlook.email.address'].create({
                    'email': email, 'connection_id': connection.id, 'shared_inbox_id': inbox.id})
                made[key] = (inbox.id, address.id)
            return agent.id, made

    def fill(self, address_id, conversations, thread=0, seed=1):
        """Import ``conversations`` one-e-mail conversations (a third answered) and one of ``thread`` e-mails,
        a page at a time, each page committed."""
        from odoo.addons.epilot_outlook.outlook_core import mapping
        rng = random.Random(seed)
        now = datetime(2026, 11, 30, 12, 0)
        team = mapping.Address("Team", 'team@contoso.com')

        def message(index, conversation, folder, date, body_words=300):
            customer = mapping.Address("Customer %d" % (index % 5000), 'customer%d@fabrikam.com' % (index % 5000))
            body = '<div><p>%s</p></div>' % ' '.join(rng.choice(WORDS) for _ in range(body_words))
            return mapping.OutlookItem(
                graph_id='%d-%s-%d' % (seed, folder, index), folder=folder, conversation_id=conversation,
                internet_message_id='<%d.%d.%s@bench>' % (seed, index, folder), subject="Question %d" % index,
                from_=customer if folder == 'inbox' else team, to=(team,) if folder == 'inbox' else (customer,),
                received_at=date, sent_at=date, is_read=rng.random() < 0.7, body_html=body)

        items = []
        for index in range(conversations):
            date = now - timedelta(minutes=index)
            items.append(message(index, 'c-%d-%d' % (seed, index), 'inbox', date))
            if index % 3 == 0:
                items.append(message(index, 'c-%d-%d' % (seed, index), 'sentitems', date + timedelta(seconds=30)))
        for index in range(thread):
            items.append(message(10_000_000 + index, 'thread-%d' % seed, 'inbox' if index % 2 else 'sentitems',
                                 now - timedelta(days=1, minutes=index)))
        # The special token the body search looks for: in one e-mail only.
        items[len(items) // 2].body_html += '<p>reference ZQX-4471</p>'
        for start in range(0, len(items), PAGE):
            with self.env() as env:
                address = env['epilot.outlook.email.address'].browse(address_id)
                env['epilot.outlook.message']._outlook_import(address, items[start:start + PAGE])
        return len(items)

    # --- measuring ------------------------------------------------------------------------------------------

    def measure(self, uid, operation):
        """Run ``operation(env)`` RUNS times (each in a transaction rolled back, the ORM cache empty); return the
        SQL queries of the last run and the median seconds."""
        seconds, queries = [], 0
        for run in range(RUNS + 1):   # the first run warms the process up (caches, prepared code) and is not kept
            with self.registry.cursor() as cr:
                from odoo import api
                env = api.Environment(cr, uid, {})
                env.invalidate_all()
                before = self.odoo.sql_db.sql_counter
                started = time.perf_counter()
                operation(env)
                if run:
                    seconds.append(time.perf_counter() - started)
                queries = self.odoo.sql_db.sql_counter - before
                cr.rollback()
        return queries, statistics.median(seconds)

    def screens(self, inbox_id):
        Domain = [('inbox_id', '=', inbox_id), ('state', '!=', 'closed')]
        with self.env() as env:   # found once, outside the measures: the agent clicks a row of the list
            thread_id = env['epilot.shared.conversation'].search(
                [('inbox_id', '=', inbox_id), ('graph_conversation_id', 'like', 'thread-')]).id

        def listing(domain):
            def run(env):
                result = env['epilot.shared.conversation'].web_search_read(
                    domain, LIST_SPEC, offset=0, limit=80, order='', count_limit=10001)
                assert result['records'], "the list is empty"
            return run

        def thread(env):
            from odoo.addons.mail.tools.discuss import Store
            conversation = env['epilot.shared.conversation'].browse(thread_id)
            conversation.web_read(FORM_SPEC)
            res = env['mail.message']._message_fetch(domain=None, thread=conversation, limit=30)
            Store().add(res['messages']).get_result()

        def mark_read(env):
            env['epilot.shared.conversation'].browse(thread_id).action_outlook_mark_read()

        return [
            ("inbox list, Not Closed (80 rows + count)", listing(Domain)),
            ("inbox list, Unread", listing(Domain + [('is_unread', '=', True)])),
            ("inbox list, search in e-mail text", listing([('inbox_id', '=', inbox_id),
                                                           ('body_search', 'ilike', 'zqx-4471')])),
            ("menu unread counts", lambda env: env['epilot.shared.inbox'].get_inbox_menu_counters()),
            ("conversation of %d e-mails: form + /mail/thread/messages" % THREAD, thread),
            ("conversation of %d e-mails: mark as read" % THREAD, mark_read),
        ]

    def run(self):
        template = self.create_database()
        self.start_odoo()
        import odoo.tests  # noqa: F401  (new_test_user)
        big = self.args.conversations
        print(f"database {self.db} from {template}; filling inboxes of {SMALL:,} and {big:,} conversations ...",
              flush=True)
        agent_id, made = self.setup_inboxes()
        started = time.perf_counter()
        count = self.fill(made['small'][1], SMALL, THREAD, seed=1) + self.fill(made['big'][1], big, THREAD, seed=2)
        print(f"imported {count:,} e-mails in {time.perf_counter() - started:.0f} s", flush=True)
        with self.env() as env:
            env.cr.execute('ANALYZE')
        results = {}
        for key in ('small', 'big'):
            for label, operation in self.screens(made[key][0]):
                results[(key, label)] = self.measure(agent_id, operation)
        with self.env() as env:
            env.cr.execute('DROP INDEX epilot_shared_conversation_body_trgm_idx')
        no_index = self.measure(agent_id, self.screens(made['big'][0])[2][1])
        self.report(results, big, no_index)

    def report(self, results, big, no_index):
        labels = [label for (key, label) in results if key == 'small']
        print()
        print(f"{'screen (server side, as the agent)':58} {'queries 1k':>10} {'queries ' + format(big // 1000) + 'k':>11}"
              f" {'ms 1k':>8} {'ms ' + format(big // 1000) + 'k':>8} {'time ratio':>10}")
        for label in labels:
            (q_small, s_small), (q_big, s_big) = results[('small', label)], results[('big', label)]
            print(f"{label:58} {q_small:>10} {q_big:>11} {s_small * 1000:>8.1f} {s_big * 1000:>8.1f}"
                  f" {s_big / s_small:>10.2f}")
        label = labels[2]
        q_idx, s_idx = results[('big', label)]
        print(f"\nbody search at {big:,} conversations: {s_idx * 1000:.1f} ms with the trigram index, "
              f"{no_index[1] * 1000:.1f} ms without ({no_index[1] / s_idx:.1f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--conversations', type=int, default=10_000, help='the big inbox (default 10,000)')
    bench = Bench(parser.parse_args())
    with contextlib.ExitStack() as stack:   # drops the database whatever happens
        stack.callback(bench.cleanup)
        bench.run()
    return 0


if __name__ == '__main__':
    sys.exit(main())
