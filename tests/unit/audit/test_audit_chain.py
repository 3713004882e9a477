"""Hash chains: sealing, and verify detecting changed, deleted and reordered records."""

from __future__ import annotations

import hashlib
import itertools

import msgspec
from audit_stubs import T0_US, TEST_KEY, TEST_KEYS, record, sealed_log

from services.audit.chain import (
    GENESIS,
    GLOBAL,
    SYSTEM,
    ChainHeads,
    canonical_json,
    content,
    seal,
    verify_sequence,
)


def test_canonical_json_when_keys_in_any_order_then_same_bytes():
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": None}}) == canonical_json(
        {"a": {"c": None, "d": [1, 2]}, "b": 1}
    )
    assert canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'


def test_seal_when_fresh_log_then_chains_start_at_genesis_and_link():
    rows = sealed_log(6, users=("u1", "u2", None))

    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.chain for r in rows[:3]] == ["user:u1", "user:u2", SYSTEM]
    assert rows[0].global_prev_hash == GENESIS and rows[0].prev_hash == GENESIS
    assert rows[3].prev_hash == rows[0].hash and rows[3].chain_seq == 2
    assert all(b.global_prev_hash == a.global_hash for a, b in itertools.pairwise(rows))


def test_seal_when_content_differs_then_hash_differs():
    a = seal([record(volume=0.01)], ChainHeads(), T0_US, key=TEST_KEY)[0]
    b = seal([record(volume=0.02)], ChainHeads(), T0_US, key=TEST_KEY)[0]

    assert a.hash != b.hash and a.global_hash != b.global_hash


def test_seal_when_continuing_from_heads_then_same_as_one_batch():
    records = [record(stream_seq=i, volume=i) for i in range(1, 5)]
    whole = seal(records, ChainHeads(), T0_US, key=TEST_KEY)

    heads = ChainHeads()
    first = seal(records[:2], heads, T0_US, key=TEST_KEY)
    rest = seal(records[2:], heads, T0_US, key=TEST_KEY)

    assert [r.global_hash for r in first + rest] == [r.global_hash for r in whole]


def test_verify_when_untouched_then_ok_with_counts():
    report = verify_sequence(sealed_log(9), TEST_KEYS)

    assert report.ok and report.records == 9 and report.chains == 3 and report.breaks == 0
    assert report.head_seq == 9


def test_verify_when_payload_changed_then_names_record_and_global_chain():
    rows = sealed_log(6)
    target = rows[3]
    changed = msgspec.structs.replace(
        target.record, payload_json=target.record.payload_json.replace(b"0.04", b"4.0")
    )
    rows[3] = msgspec.structs.replace(target, record=changed)

    report = verify_sequence(rows, TEST_KEYS)

    assert not report.ok
    brk = report.first_break
    assert brk is not None and brk.seq == 4 and brk.chain == GLOBAL
    assert brk.problem == "record content changed"
    assert brk.found == target.global_hash.hex() and brk.expected != brk.found
    assert report.breaks == 1  # the records after it still link to the hashes stored


def test_verify_when_payload_and_global_hash_forged_then_user_chain_catches_it():
    rows = sealed_log(6)
    target = rows[3]
    changed = msgspec.structs.replace(target.record, msg_id="forged")
    # forged by someone holding the key, who forgot the user's own chain
    digest = hashlib.sha256(
        content(changed, 4, target.recorded_us, target.chain_seq, TEST_KEY.kid)
    ).digest()
    forged_global = TEST_KEY.link(target.global_prev_hash, digest)
    rows[3] = msgspec.structs.replace(target, record=changed, global_hash=forged_global)

    report = verify_sequence(rows, TEST_KEYS)

    brk = report.first_break
    assert brk is not None and brk.seq == 4 and brk.chain == "user:u1"
    assert brk.found == target.hash.hex()
    assert report.breaks == 2  # and seq 5 no longer links to the forged global hash


def test_verify_when_record_deleted_then_reports_missing_before_next():
    rows = sealed_log(6)
    del rows[2]

    report = verify_sequence(rows, TEST_KEYS)

    brk = report.first_break
    assert brk is not None and brk.seq == 4 and brk.chain == GLOBAL
    assert "1 record(s) missing before seq 4" in brk.problem
    assert brk.expected == rows[1].global_hash.hex()


def test_verify_when_last_record_of_a_user_deleted_then_user_chain_still_consistent_but_global_breaks():
    rows = sealed_log(7, users=("u1", "u2"))
    del rows[4]  # u1's third record

    report = verify_sequence(rows, TEST_KEYS)

    assert not report.ok and report.first_break is not None and report.first_break.seq == 6


def test_verify_when_records_reordered_then_out_of_order_is_reported():
    rows = sealed_log(6)
    rows[2], rows[3] = rows[3], rows[2]

    report = verify_sequence(rows, TEST_KEYS)

    brk = report.first_break
    assert brk is not None and brk.seq == 4 and brk.chain == GLOBAL


def test_verify_when_record_moved_to_another_chain_then_reported_on_that_chain():
    rows = sealed_log(6)
    rows[0] = msgspec.structs.replace(rows[0], chain="user:u9")

    report = verify_sequence(rows, TEST_KEYS)

    brk = report.first_break
    assert brk is not None and brk.seq == 1 and brk.chain == "user:u9"


def test_verify_when_empty_then_ok():
    report = verify_sequence([], TEST_KEYS)

    assert report.ok and report.records == 0 and report.head_hash == ""
