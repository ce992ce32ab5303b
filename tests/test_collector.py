"""The first poll of a process leaves the startup heap out of the collector's scans.

``mailbot.intake._freeze_startup_heap``: what the process built before its
first poll (imports, configuration, compiled rules) is moved to the
collector's permanent generation once; later polls freeze nothing more, and
mail is filed as before.
"""

from __future__ import annotations

import gc

from bench.harness import everyday_messages
from mailbot import intake
from mailbot.intake import poll_mailbox

NB = "n.bataillon"


def test_the_first_poll_freezes_the_startup_heap_once(service_app, dovecot):
    dovecot.append_many(NB, everyday_messages(3))
    mailbox = service_app.config.settings.mailbox(NB)
    intake._freeze_startup_heap.cache_clear()
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        report = poll_mailbox(service_app, mailbox)
        assert report.error is None and report.ignored == 3, report.summary()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the imports alone are tens of thousands of objects
        dovecot.append_many(NB, everyday_messages(2))
        again = poll_mailbox(service_app, mailbox)
        assert again.error is None and again.ignored == 2, again.summary()
        # Nothing frozen again (frozen objects freed since only lower the count).
        assert gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
