"""Benchmark (not a test): agents' replies sent as the shared mailbox, end to end through Odoo's mail queue and
Graph, against the sandbox.

Same set-up as ``bench_backfill.py`` (whose ``Bench`` it extends): its own database from the template,
``epilot_outlook`` installed in-process, ``python -m m365_sandbox serve``, the connection connected through the
addon's connect flow, ``support@`` synced. Then ``--replies`` customers write (``/control/mail/deliver``), delta
imports their e-mails, and an agent (a member of the inbox) answers each conversation from its chatter
(``message_post``, queued). What is measured is the mail queue sending them: ``mail.mail.process_email_queue``
(the cron's method, committing after each mail) through the address's Outlook server, that is Graph's reply
drafts and ``send``. Three kinds:

1. replies (``createReply`` + ``send``: 2 Graph requests each);
2. new e-mails (a MIME draft + ``send``);
3. replies with a 4 MB attachment (``createReply``, an upload session, two byte ranges, ``send``).

Then one delta round: the sent copies in Sent Items must come back as the same messages (0 new ones).

    VENV/bin/python bench/bench_send.py [--replies 200]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_bench_backfill():
    spec = importlib.util.spec_from_file_location('bench_backfill', os.path.join(ROOT, 'bench', 'bench_backfill.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


backfill_bench = load_bench_backfill()
SUPPORT = backfill_bench.SUPPORT
BIG_FILE = 4 * 1024 * 1024


class SendBench(backfill_bench.Bench):

    def agent(self, inbox_id):
        with self.env() as env:
            agent = env['res.users'].create({
                'name': 'Bench Agent', 'login': 'bench_agent', 'email': 'bench.agent@example.com',
                'group_ids': [(4, env.ref('epilot_outlook.group_agent').id)],
            })
            agent.notification_type = 'inbox'
            inbox = env['epilot.shared.inbox'].browse(inbox_id)
            inbox.write({'member_user_ids': [(4, agent.id)], 'create_partners': True})
            return agent.id

    def customers_write(self, count, address_id):
        for index in range(count):
            self.sandbox.control('POST', '/mail/deliver', {
                'mailbox': SUPPORT, 'from': 'customer%d@fabrikam.com' % index,
                'subject': 'Bench question %d' % index, 'body_html': '<p>Question %d</p>' % index})
        self.delta_round(address_id)
        with self.env() as env:
            return env['epilot.shared.conversation'].search([('name', 'like', 'Bench question')]).ids

    def new_conversations(self, count, inbox_id):
        with self.env() as env:
            partners = env['res.partner'].create([{'name': 'Prospect %d' % index,
                                                   'email': 'prospect%d@fabrikam.com' % index}
                                                  for index in range(count)])
            return env['epilot.shared.conversation'].create([{
                'inbox_id': inbox_id, 'name': 'Bench offer %d' % index, 'partner_id': partner.id,
            } for index, partner in enumerate(partners)]).ids

    def post(self, agent_id, conversation_ids, attachment=None):
        """The agent answers each conversation (queued: the queue is what is measured)."""
        started = time.perf_counter()
        with self.env(agent_id) as env:
            Conversation = env['epilot.shared.conversation'].with_context(mail_notify_force_send=False)
            for conversation in Conversation.browse(conversation_ids):
                attachment_ids = []
                if attachment:
                    attachment_ids = env['ir.attachment'].create({
                        'name': 'scan.pdf', 'raw': attachment, 'res_model': conversation._name,
                        'res_id': conversation.id}).ids
                conversation.message_post(
                    body='<p>Thank you, done.</p>', message_type='comment', subtype_xmlid='mail.mt_comment',
                    partner_ids=conversation.partner_id.ids, attachment_ids=attachment_ids)
        return time.perf_counter() - started

    def send_queue(self, name, agent_id, conversation_ids, attachment=None):
        self.sandbox.control('DELETE', '/mail/sent')
        post_s = self.post(agent_id, conversation_ids, attachment)
        requests_before, http_before = self.mail_counts(SUPPORT), self.http.count
        queries = self.odoo.sql_db.sql_counter
        started = time.perf_counter()
        with self.env() as env:
            queued = env['mail.mail'].search_count([('state', '=', 'outgoing')])
            env['mail.mail'].process_email_queue()
        seconds = time.perf_counter() - started
        queries = self.odoo.sql_db.sql_counter - queries
        sent = len(self.sandbox.control('GET', '/mail/sent')['value'])
        with self.env() as env:
            failed = env['mail.mail'].search_count([('state', '=', 'exception')])
        assert sent == len(conversation_ids) == queued and not failed, (sent, queued, failed)
        return {'name': name, 'sent': sent, 'seconds': seconds, 'post_seconds': post_s,
                'requests': self.mail_counts(SUPPORT) - requests_before, 'round_trips': self.http.count - http_before,
                'queries': queries}

    def run(self):
        args = self.args
        self.start_connected()
        self.http = backfill_bench.HttpCounter(self.sandbox.info['graph_base_url'].rsplit('/v1.0', 1)[0])
        synced = self.backfill(SUPPORT)
        address_id, inbox_id = synced['address_id'], synced['inbox_id']
        agent_id = self.agent(inbox_id)
        print(f"sandbox up; {SUPPORT} synced ({synced['done']} messages); agent created")
        results = []
        replies = self.customers_write(args.replies, address_id)
        results.append(self.send_queue("replies (createReply + send)", agent_id, replies))
        fresh = self.new_conversations(args.replies, inbox_id)
        results.append(self.send_queue("new e-mails (MIME draft + send)", agent_id, fresh))
        big = bytes(range(256)) * (BIG_FILE // 256)
        few = max(1, args.replies // 10)
        results.append(self.send_queue("replies with a 4 MB file (upload session)", agent_id, replies[:few], big))
        with self.env() as env:
            before = env['mail.message'].search_count([('model', '=', 'epilot.shared.conversation')])
        delta = self.delta_round(address_id)
        with self.env() as env:
            after = env['mail.message'].search_count([('model', '=', 'epilot.shared.conversation')])
        self.report(results, delta, after - before)

    def report(self, results, delta, new_messages):
        line = '-' * 104
        print()
        print(line)
        print(f"Replies sent as {SUPPORT} through Odoo's mail queue and Graph (sandbox), {self.db}, "
              f"{os.cpu_count()} cores")
        print(line)
        print(f"{'kind':44s} {'sent':>5s} {'seconds':>8s} {'sent/s':>7s} {'Graph req/mail':>15s} "
              f"{'HTTP/mail':>10s} {'queries/mail':>13s} {'post ms':>8s}")
        for result in results:
            sent = result['sent']
            print(f"{result['name']:44s} {sent:>5d} {result['seconds']:>8.2f} {sent / result['seconds']:>7.1f} "
                  f"{result['requests'] / sent:>15.1f} {result['round_trips'] / sent:>10.1f} "
                  f"{result['queries'] / sent:>13.1f} {1000 * result['post_seconds'] / sent:>8.1f}")
        print("Graph req: what the sandbox counts for the mailbox (an upload session's byte ranges go to a "
              "pre-authenticated URL and are not Graph requests); HTTP: every round trip, ranges included; "
              "post ms: the agent's message_post per mail (not in sent/s)")
        print(line)
        print(f"delta afterwards (the sent copies in Sent Items): {delta['imported']} sync records, "
              f"{new_messages} new messages (0 expected: each copy is the message Odoo sent), "
              f"{delta['requests']} Graph requests, {1000 * delta['seconds']:.0f} ms")
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--replies', type=int, default=200, help='replies and new e-mails to send (default 200)')
    args = parser.parse_args()
    bench = SendBench(args)
    try:
        bench.run()
    finally:
        bench.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
