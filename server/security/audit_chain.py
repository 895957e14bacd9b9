"""Tamper-evident audit log: each row's hash covers its content and the previous hash.

Rows form one chain per tenant, numbered by ``seq`` from 1. Editing, deleting,
inserting or reordering rows breaks the chain at the first row touched, unless
every later row is rewritten too; the chain is unkeyed, so catching such a full
rewrite, or a cut of the newest rows, needs the head hash kept somewhere else.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from server.security._clock import require_aware

GENESIS_HASH: Final = "0" * 64
CANONICAL_VERSION: Final = 1
_HEX64: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited action, as plain values."""

    tenant_id: str
    seq: int
    at: datetime
    actor_type: str
    actor_id: str | None
    source_ip: str | None
    user_agent: str | None
    action: str
    object_type: str | None
    object_id: str | None
    result: str
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredAuditRow:
    """A record as stored, with the hashes that chain it."""

    record: AuditRecord
    prev_hash: str
    row_hash: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of :func:`verify_chain`; ``first_broken_seq`` is None when intact."""

    ok: bool
    first_broken_seq: int | None
    reason: str


def _timestamp(at: datetime) -> str:
    # One fixed spelling: UTC, microseconds always present, "Z".
    return require_aware(at, "at").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(record: AuditRecord, prev_hash: str) -> bytes:
    """Deterministic JSON of ``record`` and ``prev_hash``: the bytes that are hashed.

    Sorted keys, no whitespace, ASCII only (control and non-ASCII characters
    become ``\\uXXXX`` escapes), no NaN. ``details`` must be JSON data.
    """
    if not _HEX64.fullmatch(prev_hash):
        raise ValueError("prev_hash must be 64 lowercase hex digits")
    if isinstance(record.seq, bool) or not isinstance(record.seq, int) or record.seq < 1:
        raise ValueError("seq must be a positive integer")
    document = {
        "v": CANONICAL_VERSION,
        "prev_hash": prev_hash,
        "tenant_id": record.tenant_id,
        "seq": record.seq,
        "at": _timestamp(record.at),
        "actor_type": record.actor_type,
        "actor_id": record.actor_id,
        "source_ip": record.source_ip,
        "user_agent": record.user_agent,
        "action": record.action,
        "object_type": record.object_type,
        "object_id": record.object_id,
        "result": record.result,
        "reason": record.reason,
        "details": dict(record.details),
    }
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def row_hash(record: AuditRecord, prev_hash: str) -> str:
    """SHA-256 hex of :func:`canonical_bytes`."""
    return hashlib.sha256(canonical_bytes(record, prev_hash)).hexdigest()


def chain_row(record: AuditRecord, prev_hash: str) -> StoredAuditRow:
    """The row to store for ``record`` after a row whose hash is ``prev_hash``."""
    return StoredAuditRow(record=record, prev_hash=prev_hash, row_hash=row_hash(record, prev_hash))


def verify_chain(
    rows: Iterable[StoredAuditRow], *, start_seq: int = 1, start_prev_hash: str = GENESIS_HASH
) -> ChainReport:
    """Check rows in stored order; report the first seq that cannot be trusted.

    ``start_seq``/``start_prev_hash`` let a verification resume from a trusted
    checkpoint. ``first_broken_seq`` is the seq expected at the failing
    position: a missing row is reported by its own seq.
    """
    expected_seq, expected_prev = start_seq, start_prev_hash
    tenant: str | None = None
    for row in rows:
        record = row.record
        tenant = record.tenant_id if tenant is None else tenant
        if record.tenant_id != tenant:
            return ChainReport(False, expected_seq, f"row of another tenant at seq {expected_seq}")
        if record.seq != expected_seq:
            problem = "missing" if record.seq > expected_seq else "out of order or repeated"
            return ChainReport(
                False, expected_seq, f"seq {expected_seq} expected, found {record.seq} ({problem})"
            )
        if row.prev_hash != expected_prev:
            return ChainReport(
                False, expected_seq, f"seq {expected_seq}: prev_hash does not match the row before"
            )
        try:
            computed = row_hash(record, row.prev_hash)
        except (ValueError, TypeError) as exc:
            return ChainReport(False, expected_seq, f"seq {expected_seq}: unreadable ({exc})")
        if computed != row.row_hash:
            return ChainReport(
                False, expected_seq, f"seq {expected_seq}: content does not match its hash"
            )
        expected_seq, expected_prev = expected_seq + 1, row.row_hash
    return ChainReport(True, None, f"{expected_seq - start_seq} rows intact")


# --- text sanitising --------------------------------------------------------------

_NAMED_ESCAPES: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Bidirectional controls reorder how a line is displayed ("Trojan Source").
_BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Cc: C0/C1 controls, DEL, NEL; Zl/Zp: U+2028/U+2029; Cs: lone surrogates.
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Zl", "Zp", "Cs"})
_ELLIPSIS: Final = "…"
# Every character _escape changes, exactly: the backslash, the named escapes, Cc
# (U+0000-001F, U+007F-009F), Zl (U+2028), Zp (U+2029), Cs (U+D800-DFFF) and the
# bidi controls. Text without any (nearly all of it) is kept as it is.
_NEEDS_ESCAPE: Final = re.compile(
    r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
    r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _escape(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if char in _BIDI_CONTROLS or unicodedata.category(char) in _UNSAFE_CATEGORIES:
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def sanitize_text(text: str, max_len: int = 500) -> str:
    """Make ``text`` safe to show on one log line, at most ``max_len`` characters.

    Line breaks, other control characters (ANSI escapes included), Unicode line
    and paragraph separators and bidi controls become visible escapes, and a
    backslash is doubled so an escape in the output is never ambiguous. An
    escape is never cut in half; a shortened text ends with "…".
    """
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    if _NEEDS_ESCAPE.search(text) is None:
        return text if len(text) <= max_len else text[: max_len - 1] + _ELLIPSIS
    pieces: list[str] = []
    length = 0
    for index, char in enumerate(text):
        piece = _escape(char)
        remaining_input = len(text) - index - 1
        # Keep room for the ellipsis unless this piece ends the text.
        budget = max_len if remaining_input == 0 else max_len - len(_ELLIPSIS)
        if length + len(piece) > budget:
            pieces.append(_ELLIPSIS)
            break
        pieces.append(piece)
        length += len(piece)
    return "".join(pieces)
