"""PagePrefetcher: a page read ahead is handed out once, to its key; a failed read is handed out as nothing."""
import threading

from outlook_core.prefetch import PagePrefetcher


def test_page_handed_out_once_to_its_key():
    prefetcher = PagePrefetcher()
    calls = []
    prefetcher.start(('db', 1, 'inbox', 'link-2'), lambda: calls.append(1) or 'page 2')
    prefetcher.start(('db', 1, 'inbox', 'link-2'), lambda: calls.append(1) or 'page 2 again')
    assert prefetcher.take(('db', 1, 'inbox', 'link-3')) is None
    assert prefetcher.take(('db', 1, 'inbox', 'link-2')) == 'page 2'
    assert prefetcher.take(('db', 1, 'inbox', 'link-2')) is None, "a page is handed out once"
    assert calls == [1], "a key already on its way is not read twice"


def test_failed_or_slow_read_is_handed_out_as_nothing():
    prefetcher = PagePrefetcher()

    def fail():
        raise ConnectionError("Graph went away")
    prefetcher.start('failed', fail)
    assert prefetcher.take('failed') is None
    release = threading.Event()
    prefetcher.start('slow', lambda: release.wait(5) and 'late')
    assert prefetcher.take('slow', timeout=0.05) is None
    release.set()
    assert prefetcher.take('slow') is None, "a page given up on is not handed out later"


def test_capacity_drops_the_oldest():
    prefetcher = PagePrefetcher(capacity=2, workers=1)
    for index in range(4):
        prefetcher.start(index, lambda index=index: 'page %d' % index)
    assert prefetcher.take(0) is None and prefetcher.take(1) is None
    assert prefetcher.take(2) == 'page 2' and prefetcher.take(3) == 'page 3'
