"""The reader's own fixed bounds, besides the admin's ``[limits]``.

Sizes that protect the stdlib and our decoders from pathological input
whatever ``ParseLimits`` says: longest text kept, header values decoded,
MIME header values handed to the quadratic parameter parser, recursion depth,
zip read chunks, and how long a forwarding note may be.
"""

from __future__ import annotations

# Longest plain text we hand on (characters): detection and field reading
# need the first pages of a letter, not a novel.
MAX_TEXT_CHARS = 1_000_000
# Bytes of one text part we decode: enough for MAX_TEXT_CHARS of any charset.
_MAX_TEXT_BYTES = 4 * MAX_TEXT_CHARS
# HTML characters converted per message; linear but pure Python (~1 s/MB
# for hostile markup).
_MAX_HTML_CHARS = 1_000_000
_MAX_WARNINGS = 100
# Characters kept per header value in ParsedMail.headers.
_MAX_HEADER_VALUE = 2000
# Raw bytes of one header value we decode: RFC 2047 words are longer than
# their text, and the decoders are not linear on pathological input.
_MAX_RAW_HEADER_VALUE = 16 * 1024
# Content-* values are parsed by the stdlib's quadratic parameter parser.
_MAX_MIME_HEADER = 8 * 1024
_MAX_FILENAME = 200
_MAX_REFERENCES = 100
# The stdlib parser recurses once per nested part; stay far from the
# interpreter's recursion limit whatever max_nesting_depth says.
_MAX_STRUCTURE_DEPTH = 200
_FEED_CHUNK = 8192
# Small files compress well legitimately: the ratio test starts above this.
_ZIP_RATIO_FLOOR = 1 << 20
_ZIP_READ_CHUNK = 64 * 1024
# A forwarding note longer than this is a message of its own, not a forward.
_SHORT_FORWARD_NOTE = 2000

# When a message is read from its spool (``parsers.mail.spooled``), an
# attachment at least this big (its base64 run, or a zip member inflated) is
# written into a file of the spool instead of memory; one decoded in memory
# anyway (``mailbot.pipeline._spool_big``) is moved to a file from this size.
SPOOL_DECODED_BYTES = 1 << 20
