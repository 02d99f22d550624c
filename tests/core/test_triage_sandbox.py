"""``MailboxReader``'s triage requests against the sandbox (issue 19, item 5; docs/microsoft-graph.md §3.2,
§3.4, §5): the Archive folder's id, where messages are now (``parentFolderId`` in ``$batch``), and moves to Archive in
``$batch`` that keep the immutable id and delete nothing."""
from urllib.parse import urlsplit

import pytest

from outlook_core import errors
from outlook_core.mailbox import MailboxReader
from test_mailbox_sandbox import (  # noqa: F401 (fixtures)
    HR, SUPPORT, client, control, folder_messages, reader, run_delta_round, session, window_start,
)


def test_move_to_archive_in_batches_of_20_keeps_ids_and_deletes_nothing(sandbox, http, reader, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 25, 'days': 30, 'seed': 21})
    ids = sorted(message.immutable_id for message in folder_messages(sandbox, SUPPORT, 'inbox'))[:23]
    gone = ids[5]
    control(http, sandbox, '/mail/delete', {'id': gone, 'permanent': True})
    total = len(sandbox.state.messages)

    outcome = reader.move_messages(ids, 'archive')

    assert isinstance(outcome.pop(gone), errors.NotFound)
    assert outcome == dict.fromkeys(i for i in ids if i != gone)
    archived = {message.immutable_id for message in folder_messages(sandbox, SUPPORT, 'archive')}
    assert archived == set(ids) - {gone}, "moved under the same immutable ids"
    assert len(sandbox.state.messages) == total and not folder_messages(sandbox, SUPPORT, 'deleteditems')
    batches = [(urlsplit(url).path, [(item['method'], item['url'].rsplit('/', 1)[-1], item['body'])
                                     for item in body['requests']]) for _m, url, _p, body in session.calls]
    assert [(path, len(items)) for path, items in batches] == [('/v1.0/$batch', 20), ('/v1.0/$batch', 3)]
    assert batches[0][1][0] == ('POST', 'move', {'destinationId': 'archive'})


def test_parent_folders_tell_archive_from_deleted_items(sandbox, http, reader, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 4, 'days': 30, 'seed': 22})
    archived, deleted, kept, purged = sorted(m.immutable_id for m in folder_messages(sandbox, SUPPORT, 'inbox'))[:4]
    since = window_start(sandbox, 40)
    _changes, link, _pages = run_delta_round(reader, 'inbox', since)
    reader.move_messages([archived], 'archive')
    control(http, sandbox, '/mail/delete', {'id': deleted})
    control(http, sandbox, '/mail/delete', {'id': purged, 'permanent': True})
    # Delta says only "deleted" for each of them, wherever they went.
    changes, _link, _pages = run_delta_round(reader, 'inbox', since, link)
    assert {change.graph_id for change in changes if change.removed} == {archived, deleted, purged}

    archive_id = reader.folder_id('archive')
    session.calls.clear()
    where = reader.parent_folders([archived, deleted, kept, purged])

    box = sandbox.state.user_by_ref(SUPPORT)
    assert archive_id == sandbox.state.folder_by_ref(box.id, 'archive').id
    assert where == {archived: archive_id, deleted: sandbox.state.folder_by_ref(box.id, 'deleteditems').id,
                     kept: sandbox.state.folder_by_ref(box.id, 'inbox').id, purged: None}
    assert len(session.calls) == 1, "one $batch"


def test_triage_in_a_forbidden_mailbox_reports_the_error(client, sandbox):
    outcome = MailboxReader(client, HR).move_messages(['AAMkAnything'], 'archive')
    assert isinstance(outcome['AAMkAnything'], errors.Forbidden)
    with pytest.raises(errors.Forbidden):
        MailboxReader(client, HR).parent_folders(['AAMkAnything'])
