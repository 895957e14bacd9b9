"""Audit hash chain: canonical form, tamper detection and text sanitising."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.security import audit_chain
from server.security.audit_chain import (
    GENESIS_HASH,
    AuditRecord,
    StoredAuditRow,
    canonical_bytes,
    chain_row,
    row_hash,
    sanitize_text,
    verify_chain,
)

AT = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def record(seq: int, **changes: object) -> AuditRecord:
    base = AuditRecord(
        tenant_id="tenant-1",
        seq=seq,
        at=AT + timedelta(seconds=seq),
        actor_type="user",
        actor_id="user-7",
        source_ip="203.0.113.9",
        user_agent="QueueDesk/1.0",
        action="ticket.call",
        object_type="ticket",
        object_id=f"ticket-{seq}",
        result="ok",
        reason=None,
        details={"counter": 2, "number": f"A{seq:03d}"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def build_chain(count: int = 5) -> list[StoredAuditRow]:
    rows: list[StoredAuditRow] = []
    prev = GENESIS_HASH
    for seq in range(1, count + 1):
        row = chain_row(record(seq), prev)
        rows.append(row)
        prev = row.row_hash
    return rows


def broken_at(rows: list[StoredAuditRow]) -> int | None:
    report = verify_chain(rows)
    assert report.ok is (report.first_broken_seq is None)
    return report.first_broken_seq


# --- canonical form -------------------------------------------------------------------


def test_canonical_bytes_are_compact_sorted_ascii_json() -> None:
    data = canonical_bytes(record(1, details={"z": 1, "a": "é"}), GENESIS_HASH)
    text = data.decode("ascii")
    assert " " not in text.replace("QueueDesk/1.0", "")
    parsed = json.loads(text)
    assert list(parsed) == sorted(parsed)
    assert text.index('"a"') < text.index('"z"')
    assert "\\u00e9" in text
    assert parsed["prev_hash"] == GENESIS_HASH
    assert parsed["at"] == "2025-03-01T12:00:01.123456Z"


def test_canonical_bytes_do_not_depend_on_dict_order() -> None:
    one = record(1, details={"a": 1, "b": {"y": 2, "x": 3}})
    two = record(1, details={"b": {"x": 3, "y": 2}, "a": 1})
    assert canonical_bytes(one, GENESIS_HASH) == canonical_bytes(two, GENESIS_HASH)


def test_timestamps_are_normalised_to_utc_with_microseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    whole_second = datetime(2025, 3, 1, 14, 0, 0, tzinfo=plus_two)
    parsed = json.loads(canonical_bytes(record(1, at=whole_second), GENESIS_HASH))
    assert parsed["at"] == "2025-03-01T12:00:00.000000Z"


def test_control_characters_are_escaped_in_canonical_form() -> None:
    data = canonical_bytes(record(1, reason="line1\nline2\r\u2028"), GENESIS_HASH)
    assert b"\n" not in data
    assert b"\r" not in data
    assert b"\\n" in data
    assert b"\\u2028" in data


def test_row_hash_is_sha256_of_canonical_bytes() -> None:
    rec = record(1)
    assert (
        row_hash(rec, GENESIS_HASH)
        == hashlib.sha256(canonical_bytes(rec, GENESIS_HASH)).hexdigest()
    )
    assert row_hash(rec, GENESIS_HASH) != row_hash(rec, "f" * 64)


@pytest.mark.parametrize(
    ("changes", "prev", "message"),
    [
        ({"at": AT.replace(tzinfo=None)}, GENESIS_HASH, "timezone"),
        ({"seq": 0}, GENESIS_HASH, "seq"),
        ({"seq": True}, GENESIS_HASH, "seq"),
        ({}, "0" * 63, "prev_hash"),
        ({}, "A" * 64, "prev_hash"),
        ({"details": {"x": float("nan")}}, GENESIS_HASH, "JSON"),
    ],
)
def test_invalid_records_are_errors(changes: dict[str, object], prev: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        canonical_bytes(replace(record(1), **changes), prev)  # type: ignore[arg-type]


def test_genesis_hash_is_64_zeros() -> None:
    assert GENESIS_HASH == "0" * 64
    assert build_chain(1)[0].prev_hash == GENESIS_HASH


# --- verification ---------------------------------------------------------------------


def test_intact_chain_verifies() -> None:
    report = verify_chain(build_chain())
    assert report.ok
    assert report.first_broken_seq is None
    assert "5 rows" in report.reason


def test_empty_chain_verifies() -> None:
    assert verify_chain([]).ok


def test_edited_row_is_detected_at_that_row() -> None:
    rows = build_chain()
    rows[2] = replace(rows[2], record=replace(rows[2].record, result="denied"))
    report = verify_chain(rows)
    assert report.first_broken_seq == 3
    assert "hash" in report.reason


def test_edited_row_with_recomputed_hash_is_detected_at_the_next_row() -> None:
    rows = build_chain()
    forged = chain_row(replace(rows[2].record, actor_id="someone-else"), rows[2].prev_hash)
    rows[2] = forged
    report = verify_chain(rows)
    assert report.first_broken_seq == 4
    assert "prev_hash" in report.reason


def test_edited_details_are_detected() -> None:
    rows = build_chain()
    rows[1] = replace(rows[1], record=replace(rows[1].record, details={"counter": 3}))
    assert broken_at(rows) == 2


@pytest.mark.parametrize("index", [0, 2, 4])
def test_deleted_row_is_detected_by_its_seq(index: int) -> None:
    rows = build_chain()
    del rows[index]
    if index == 4:
        # Cutting the newest row is invisible to the chain alone.
        assert broken_at(rows) is None
    else:
        report = verify_chain(rows)
        assert report.first_broken_seq == index + 1
        assert "missing" in report.reason


def test_deleted_row_with_renumbered_tail_is_detected() -> None:
    rows = build_chain()
    del rows[2]
    rows[2:] = [replace(r, record=replace(r.record, seq=r.record.seq - 1)) for r in rows[2:]]
    assert broken_at(rows) == 3


def test_reordered_rows_are_detected() -> None:
    rows = build_chain()
    rows[2], rows[3] = rows[3], rows[2]
    report = verify_chain(rows)
    assert report.first_broken_seq == 3


def test_reordered_rows_with_swapped_seqs_are_detected() -> None:
    rows = build_chain()
    third, fourth = rows[2], rows[3]
    rows[2] = replace(fourth, record=replace(fourth.record, seq=3))
    rows[3] = replace(third, record=replace(third.record, seq=4))
    assert broken_at(rows) == 3


def test_inserted_unchained_row_is_detected_at_that_row() -> None:
    rows = build_chain()
    bogus = StoredAuditRow(
        record=record(3, action="user.delete"), prev_hash="1" * 64, row_hash="2" * 64
    )
    rows.insert(2, bogus)
    assert broken_at(rows) == 3


def test_inserted_well_chained_row_is_detected_at_the_row_after() -> None:
    rows = build_chain()
    forged = chain_row(record(3, action="user.delete"), rows[1].row_hash)
    renumbered = [replace(r, record=replace(r.record, seq=r.record.seq + 1)) for r in rows[2:]]
    tampered = [*rows[:2], forged, *renumbered]
    report = verify_chain(tampered)
    assert report.first_broken_seq == 4
    assert "prev_hash" in report.reason


def test_duplicated_seq_is_detected() -> None:
    rows = build_chain()
    rows.insert(3, rows[2])
    report = verify_chain(rows)
    assert report.first_broken_seq == 4
    assert "repeated" in report.reason


def test_altered_prev_hash_is_detected() -> None:
    rows = build_chain()
    rows[0] = replace(rows[0], prev_hash="f" * 64)
    assert broken_at(rows) == 1


def test_row_of_another_tenant_is_detected() -> None:
    rows = build_chain()
    rows[3] = chain_row(replace(rows[3].record, tenant_id="tenant-2"), rows[2].row_hash)
    report = verify_chain(rows)
    assert report.first_broken_seq == 4
    assert "tenant" in report.reason


def test_unreadable_row_is_reported_not_raised() -> None:
    rows = build_chain()
    rows[1] = replace(rows[1], record=replace(rows[1].record, at=AT.replace(tzinfo=None)))
    assert broken_at(rows) == 2


def test_verification_can_resume_from_a_checkpoint() -> None:
    rows = build_chain(6)
    report = verify_chain(rows[3:], start_seq=4, start_prev_hash=rows[2].row_hash)
    assert report.ok
    assert verify_chain(rows[3:]).first_broken_seq == 1


# --- sanitize_text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("admin\r\n2025-03-01 login ok user=root", "admin\\r\\n2025-03-01 login ok user=root"),
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("tab\there", "tab\\there"),
        ("nel\x85x", "nel\\x85x"),
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
        ("back\\slash", "back\\\\slash"),
        ("rtl\u202eexe.txt", "rtl\\u202eexe.txt"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("café 😀", "café 😀"),
    ],
)
def test_sanitize_text_escapes_what_could_forge_or_disguise_a_line(
    text: str, expected: str
) -> None:
    assert sanitize_text(text) == expected


def test_literal_backslash_n_is_distinguishable_from_a_newline() -> None:
    assert sanitize_text("a\\nb") != sanitize_text("a\nb")


def test_sanitize_text_truncates_with_an_ellipsis() -> None:
    assert sanitize_text("x" * 600) == "x" * 499 + "…"
    assert sanitize_text("x" * 500) == "x" * 500
    assert sanitize_text("abcdef", max_len=5) == "abcd…"
    assert sanitize_text("abcdef", max_len=1) == "…"


def test_sanitize_text_never_cuts_an_escape_in_half() -> None:
    assert sanitize_text("abc\u2028def", max_len=6) == "abc…"
    assert sanitize_text("abc\n", max_len=5) == "abc\\n"


def test_sanitize_text_refuses_a_useless_limit() -> None:
    with pytest.raises(ValueError, match="max_len"):
        sanitize_text("x", max_len=0)


_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


@given(st.text(), st.integers(min_value=1, max_value=600))
def test_sanitized_text_is_one_safe_line_within_the_limit(text: str, max_len: int) -> None:
    out = sanitize_text(text, max_len=max_len)
    assert len(out) <= max_len
    assert not _LINE_BREAKS & set(out)
    assert out.splitlines() in ([out], [])
    assert all(unicodedata.category(c) not in {"Cc", "Cs", "Zl", "Zp"} for c in out)
    out.encode("utf-8")  # no lone surrogates left


@given(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"))
)
def test_short_printable_ascii_passes_unchanged(text: str) -> None:
    assert sanitize_text(text, max_len=10_000) == text


def _sanitize_char_by_char(text: str, max_len: int) -> str:
    """sanitize_text without its fast path: every character through _escape."""
    pieces: list[str] = []
    length = 0
    for index, char in enumerate(text):
        piece = audit_chain._escape(char)
        budget = max_len if index == len(text) - 1 else max_len - 1
        if length + len(piece) > budget:
            pieces.append("…")
            break
        pieces.append(piece)
        length += len(piece)
    return "".join(pieces)


@given(
    text=st.text(
        alphabet=st.one_of(
            st.characters(codec="utf-8"),
            st.sampled_from("\\\n\r\t\x00\x1b\x7f\x85\u2028\u2029\u202e\u2066\u061c\ud800é"),
        ),
        max_size=40,
    ),
    max_len=st.integers(min_value=1, max_value=45),
)
def test_sanitize_text_fast_path_agrees_with_escaping_every_character(
    text: str, max_len: int
) -> None:
    assert sanitize_text(text, max_len) == _sanitize_char_by_char(text, max_len)
