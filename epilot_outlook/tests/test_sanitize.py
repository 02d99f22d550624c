import os
import shutil
import signal
import sys
import tempfile
from unittest.mock import patch

import psutil

from markupsafe import Markup

from odoo.tests import TransactionCase, tagged

from ..tools import sanitize as sanitize_module
from ..tools.sanitize import SanitizedBodies, SanitizerPool, field_sanitizer

# What mail from outside brings: active content, odd markup, quotes Odoo tags, nothing at all.
BODIES = [
    '<p onclick="alert(1)">Hi <a href="javascript:alert(2)">there</a></p><script>alert(3)</script>',
    '<html><head><style>p {color: red}</style></head><body><p style="color: blue; position: fixed">x</p></body></html>',
    '<div id="divRplyFwdMsg">From: a</div><div>quoted</div><blockquote>older</blockquote>',
    '<form action="https://evil.example"><input name="q"></form><iframe src="https://evil.example"></iframe>',
    '<p>caf\u00e9 \u2013 \u65e5\u672c</p><img src="cid:image001.png@01DA" alt="logo">',
    '<!--[if mso]><p>outlook only</p><![endif]--><p>--<br>Signature</p>',
    '<p>unclosed <b>bold <i>italic',
    '',
    'plain text, no tags',
]

# A helper that hostile HTML took over: whatever it is asked, it answers with the answer named ``answer`` (a
# pickle whose unpickling creates the file ``marker``, or JSON that is not the page's sanitized bodies), then
# reads its input to the end.
HOSTILE_HELPER = '''
import json, pickle, sys
class Payload:
    def __reduce__(self):
        return (open, (%(marker)r, 'w'))
answers = {
    'pickle': pickle.dumps((0, Payload()), protocol=2),
    'not strings': json.dumps([0, [{'x': 1}] * %(count)d]).encode(),
    'too few': json.dumps([0, ['<p>unsanitized</p>']]).encode(),
}
sys.stdout.buffer.write(answers[%(answer)r] + b'\\n')
sys.stdout.buffer.flush()
sys.stdin.buffer.read()
'''


@tagged('post_install', '-at_install')
class TestSanitizer(TransactionCase):
    """ Bodies sanitized apart (here or in the helper process) are what ``mail.message.body`` stores. """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.field = cls.env['mail.message']._fields['body']
        cls.sanitize = field_sanitizer(cls.field)
        cls.expected = [cls.field.convert_to_column_insert(Markup(body), cls.env['mail.message']) or ''
                        for body in BODIES]

    def test_same_as_the_field_stores(self):
        self.assertEqual([self.sanitize(body) or '' for body in BODIES], self.expected)
        for active in ('onclick', '<script', 'javascript:', '<form', '<iframe', 'position'):
            self.assertNotIn(active, ''.join(self.expected), "the field's sanitizer removes it")
        with self.assertRaises(ValueError):
            field_sanitizer(self.env['mail.message']._fields['subject'])

    def test_helper_process_sanitizes_the_same(self):
        pool = SanitizerPool(processes=1)
        with pool.held(), patch.dict(os.environ, {'EPILOT_OUTLOOK_KEYS_PROBE': 'secret'}):
            bodies = pool.submit(self.sanitize, BODIES * 5)
            self.assertEqual([body or '' for body in bodies.result()], self.expected * 5)
            helper = pool.helper_pid
            self.assertTrue(helper and helper != os.getpid(), "it ran in a helper process")
            self.assertIn('PATH', psutil.Process(helper).environ())
            self.assertNotIn('EPILOT_OUTLOOK_KEYS_PROBE', psutil.Process(helper).environ(),
                             "the helper gets none of the worker's Outlook keys")
        self.assertIsNone(pool.helper_pid, "the last user leaving stops the helper")
        self.assertFalse(psutil.pid_exists(helper) and psutil.Process(helper).status() != psutil.STATUS_ZOMBIE,
                         "and it is gone")

    def test_without_a_user_or_a_helper_it_sanitizes_here(self):
        pool = SanitizerPool(processes=1)
        self.assertEqual([body or '' for body in pool.submit(self.sanitize, BODIES).result()], self.expected)
        self.assertIsNone(pool.helper_pid, "nobody holds the pool: no helper was started")
        with SanitizerPool(processes=0).held() as no_helper:
            self.assertEqual([body or '' for body in no_helper.submit(self.sanitize, BODIES).result()], self.expected)
            self.assertIsNone(no_helper.helper_pid)
        self.assertEqual([body or '' for body in SanitizedBodies(self.sanitize, BODIES).result()], self.expected)

    def test_a_dead_helper_costs_time_not_mail(self):
        pool = SanitizerPool(processes=1)
        with pool.held():
            pool.submit(self.sanitize, BODIES[:1]).result()   # it ran: a helper that dies later is replaced
            pending = pool.submit(self.sanitize, BODIES)
            helper = pool.helper_pid
            os.kill(helper, signal.SIGKILL)
            # Sent before the helper died: whether it answered first or not, the page comes back whole.
            self.assertEqual([body or '' for body in pending.result()], self.expected)
            # SIGKILL takes effect asynchronously: until the process is gone it still looks alive, and a page
            # submitted then goes to it (and comes back sanitized in the worker, as above). Wait for its end.
            pool._helper.process.wait(timeout=10)
            again = pool.submit(self.sanitize, BODIES)
            self.assertEqual([body or '' for body in again.result()], self.expected)
            self.assertTrue(pool.helper_pid and pool.helper_pid != helper, "the next page started a new helper")

    def test_a_helper_that_cannot_run_is_not_started_again_and_again(self):
        pool = SanitizerPool(processes=1)
        with pool.held(), patch.object(sys, 'executable', '/bin/false'):
            first = pool.submit(self.sanitize, BODIES)
            helper = pool._helper
            self.assertEqual([body or '' for body in first.result()], self.expected, "sanitized in the worker")
            for _page in range(3):
                self.assertEqual([body or '' for body in pool.submit(self.sanitize, BODIES).result()], self.expected)
            self.assertIs(pool._helper, helper, "no new helper for each page")
        with pool.held():   # the next cron run tries again
            self.assertEqual([body or '' for body in pool.submit(self.sanitize, BODIES).result()], self.expected)
            self.assertTrue(pool.helper_pid)

    def test_a_helper_answering_anything_but_plain_text_is_not_believed(self):
        """ The helper parses hostile HTML: were it ever taken over, its answer must not run code in the worker
        (a pickle would) nor be taken as sanitized bodies. """
        workdir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, workdir)
        marker = os.path.join(workdir, 'unpickled')
        for answer in ('pickle', 'not strings', 'too few'):
            hostile = HOSTILE_HELPER % {'marker': marker, 'answer': answer, 'count': len(BODIES)}
            pool = SanitizerPool(processes=1)
            with pool.held(), patch.object(sanitize_module, '_HELPER_SOURCE', hostile):
                bodies = pool.submit(self.sanitize, BODIES)
                helper = pool._helper
                self.assertEqual([body or '' for body in bodies.result()], self.expected, answer)
                self.assertFalse(os.path.exists(marker), "%s: nothing of the answer was unpickled" % answer)
                self.assertFalse(helper.alive(), "%s: a helper that answers so is stopped at once" % answer)
                self.assertEqual([body or '' for body in pool.submit(self.sanitize, BODIES).result()],
                                 self.expected, "%s: later pages are sanitized too" % answer)
