"""The staff back-office (``mailbot web``): server-rendered pages in French.

``app`` builds the Starlette application (routes, sessions, security
headers), ``security`` owns the session secret, CSRF tokens, the login
throttle and the reverse-proxy trust, ``pages`` the page handlers,
``listing`` the dossier list query, ``labels`` the French wording it shows,
``server`` runs it under uvicorn. The back-office holds no business rule:
decisions go through the same service functions as the CLI.
"""
