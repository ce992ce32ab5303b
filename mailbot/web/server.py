"""``mailbot web``: the back-office served by uvicorn."""

from __future__ import annotations

import uvicorn

from mailbot.app import App
from mailbot.web.app import create_app


def serve(app: App, *, host: str, port: int) -> None:
    """Serve the back-office until SIGINT/SIGTERM.

    Forwarded headers are not handed to uvicorn: the back-office itself
    decides which peers are trusted proxies (``[web] trusted_proxies``).
    No access log: its URLs carry searches (names, addresses), and what
    staff do is in the audit trail.
    """
    web_app = create_app(app)
    uvicorn.run(
        web_app,
        host=host,
        port=port,
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_level=app.config.settings.service.log_level.lower(),
    )
