"""Reason codes: why a reply was held back, why a message waits for staff, why a check failed.

A reason is decided once, where it happens, and stored as one of these
codes (a short string column in the database); the wording for people lives
in ``mailbot/wording.py`` (French, one label per member, a test checks that
none is missing). Rewording a label never changes what is stored, and a new
reason cannot reach staff in English by accident.

Values are stored: never rename one. Add a member (and its label) instead.
Free-text detail that goes with a reason (an exception, a server response, a
dossier reference) is stored next to the code, not inside it.
"""

from __future__ import annotations

from enum import StrEnum


class ReplyHold(StrEnum):
    """Why an automatic reply was suppressed, or held (the global caps) until it may go."""

    REPLIES_DISABLED = "replies_disabled"  # replies.enabled = false
    NO_SENDER_ADDRESS = "no_sender_address"
    RECIPIENT_IS_OURS = "recipient_is_ours"  # one of our mailboxes or staff
    FROM_OUR_ADDRESS = "from_our_address"  # the message came from our own address
    AUTHENTICATION_FAILED = "authentication_failed"  # reply_unless_fail and dmarc/spf failed
    AUTHENTICATION_NOT_PASSED = "authentication_not_passed"  # reply_only_if_pass, no pass
    ALREADY_SENT = "already_sent"  # this kind of reply went to this dossier already
    SENDER_DAILY_CAP = "sender_daily_cap"  # replies.per_sender_daily_cap reached
    HOURLY_CAP = "hourly_cap"  # replies.global_hourly_cap reached (held, sent later)
    DOMAIN_DAILY_CAP = "domain_daily_cap"  # replies.per_domain_daily_cap reached
    GLOBAL_DAILY_CAP = "global_daily_cap"  # replies.global_daily_cap reached (held, sent later)


class DeliveryFailure(StrEnum):
    """Why a queued reply (or digest) was given up: status ``failed``."""

    REFUSED = "refused"  # a permanent (5xx) refusal of the SMTP server
    GAVE_UP = "gave_up"  # temporary errors until replies.max_attempts
    INTERRUPTED = "interrupted"  # the worker stopped mid-send; not resent to avoid a duplicate


class ReviewReason(StrEnum):
    """Why a message is ``needs_review`` or ``failed`` (staff look at it)."""

    # The service could not process the message (status failed).
    PARSE_ERROR = "parse_error"  # the MIME structure could not be parsed
    ANALYSIS_ERROR = "analysis_error"  # classification or reading raised
    FILING_ERROR = "filing_error"  # writing it to the database raised
    # The message was processed but a person must decide (status needs_review).
    UNCERTAIN_SCORE = "uncertain_score"  # between review_threshold and candidature_threshold
    OVER_LIMITS = "over_limits"  # a configured size limit cut the reading short
    UNKNOWN_DOSSIER = "unknown_dossier"  # a follow-up quotes a reference we do not have
    UNREADABLE_ATTACHMENT = "unreadable_attachment"  # no dossier read; an unreadable file may be it
    DOSSIER_UNCERTAIN = "dossier_uncertain"  # the dossier was read, but with doubt
    OVER_BUDGET = "over_budget"  # the message's reading budget ran out: documents left unread
    # A follow-up from someone who is not the dossier's applicant nor one of
    # its correspondents, or citing a Message-ID we did not send for it.
    NOT_THE_APPLICANT = "not_the_applicant"
    # A follow-up of the applicant with neither attachments nor values the
    # service could read in its body: a person reads it.
    FOLLOW_UP_UNREAD = "follow_up_unread"


class MailboxCheck(StrEnum):
    """Why the digest's comparison of a mailbox with the ledger could not be made."""

    UNREACHABLE = "unreachable"  # connection, login or folder selection failed
    CHECK_FAILED = "check_failed"  # an unexpected error while comparing
    NEVER_POLLED = "never_polled"  # no cursor yet: nothing to compare with
    UIDVALIDITY_CHANGED = "uidvalidity_changed"  # the folder was recreated on the server


class Refusal(StrEnum):
    """Why a staff action (a decision, a correction, a message attached or retried) was refused.

    Raised with ``mailbot.errors.RefusedError`` (the code, its parameters and
    an English sentence for the CLI and the logs); the back-office words it
    with ``mailbot.wording.refusal_text``. Never stored.
    """

    NOT_A_DECISION = "not_a_decision"  # a status staff may not decide
    NO_DOSSIER = "no_dossier"
    NO_MESSAGE = "no_message"
    NOT_DISMISSABLE = "not_dismissable"  # only failed or needs_review messages
    NOT_ATTACHABLE = "not_attachable"  # idem
    NOT_RETRYABLE = "not_retryable"  # idem
    RAW_NOT_KEPT = "raw_not_kept"  # the message's raw bytes were not kept
    MESSAGE_UNREADABLE = "message_unreadable"  # its raw bytes cannot be parsed
    UNKNOWN_FIELD = "unknown_field"
    INVALID_VALUE = "invalid_value"  # a corrected value the field's parser refuses


# The classification rules whose decision sends a message to review, and the
# reason each gives. ``decided_by`` of a classification names the rule.
REVIEW_REASON_OF_RULE: dict[str, ReviewReason] = {
    "score": ReviewReason.UNCERTAIN_SCORE,
    "over_limits": ReviewReason.OVER_LIMITS,
    "not_the_applicant": ReviewReason.NOT_THE_APPLICANT,
}

ALL_REASONS: tuple[type[StrEnum], ...] = (
    ReplyHold,
    DeliveryFailure,
    ReviewReason,
    MailboxCheck,
    Refusal,
)
