"""Persistence of the mail-intake service: database schema, migrations, blobs.

* ``storage.models``: the tables (SQLModel) and the allowed status values;
* ``storage.db``: engines, ``open_database`` (creates/migrates), ``session_scope``;
* ``storage.repositories``: the queries and writes the rest of the code uses;
* ``storage.blobs``: the content-addressed store for raw messages and attachments;
* ``storage.errors``: the exceptions raised by all of the above.

This package never parses mail and never touches the network (beyond the
database connection itself).
"""
