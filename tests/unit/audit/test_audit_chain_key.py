"""The keyed chain: a rewrite with recomputed hashes is caught with the key;
without it verify says it cannot prove authenticity; old unkeyed records."""

from __future__ import annotations

import hashlib
import hmac

import msgspec
from audit_stubs import TEST_KEY, TEST_KEYS, record, sealed_log

from services.audit.chain import GLOBAL, AuditKeys, ChainHeads, seal, verify_sequence
from services.audit.keys import derive, keys_for_verifying, keys_for_writing
from services.runtime.credentials import new_entry
from tests.support.audit_forge import forge_with_sha256


def _changed(rows, index):
    target = rows[index].record
    return msgspec.structs.replace(target, payload_json=target.payload_json.replace(b"0.0", b"9.0"))


def test_seal_then_every_record_names_the_key_and_links_are_not_plain_sha256():
    rows = sealed_log(3)

    assert {r.key_id for r in rows} == {TEST_KEY.kid}
    first = rows[0]
    assert first.global_hash != hashlib.sha256(first.global_prev_hash).digest()
    assert "test" in repr(TEST_KEY) and bytes(range(32)).hex() not in repr(TEST_KEY)


def test_verify_when_row_rewritten_and_later_hashes_recomputed_with_sha256_then_first_bad_record_named():
    rows = sealed_log(8)

    forged = forge_with_sha256(rows, 3, _changed(rows, 3))

    report = verify_sequence(forged, TEST_KEYS)
    assert not report.ok and not report.authentic
    brk = report.first_break
    assert brk is not None and brk.seq == 4 and brk.chain == GLOBAL
    assert brk.problem == "record content changed"


def test_verify_when_rewrite_also_clears_key_ids_then_downgrade_is_a_break():
    rows = sealed_log(8)

    forged = forge_with_sha256(rows, 3, _changed(rows, 3), strip_key_ids=True)

    report = verify_sequence(forged, TEST_KEYS)
    assert not report.ok
    brk = report.first_break
    assert brk is not None and brk.seq == 4 and "unkeyed record after keyed" in brk.problem


def test_verify_when_every_key_id_cleared_then_not_authentic_and_counted_unkeyed():
    rows = sealed_log(5)

    forged = forge_with_sha256(rows, 0, _changed(rows, 0), strip_key_ids=True)

    report = verify_sequence(forged, TEST_KEYS)
    assert report.ok and not report.authentic and report.unkeyed == 5
    assert "before the chain was keyed" in report.note


def test_verify_when_untouched_with_the_right_key_then_authentic():
    report = verify_sequence(sealed_log(8), TEST_KEYS)

    assert report.ok and report.authentic and report.unkeyed == report.unchecked == 0


def test_verify_with_another_key_then_content_changed_at_first_record():
    other = AuditKeys([derive(TEST_KEY.kid, bytes(32))])

    report = verify_sequence(sealed_log(4), other)

    assert not report.ok and report.first_break is not None and report.first_break.seq == 1


def test_verify_without_key_then_linkage_checked_and_says_it_cannot_verify_authenticity():
    rows = sealed_log(6)

    untouched = verify_sequence(rows, None)
    assert untouched.ok and not untouched.authentic and untouched.unchecked == 6
    assert "cannot verify authenticity" in untouched.note and "no audit key" in untouched.note

    del rows[2]
    gap = verify_sequence(rows, None)
    assert not gap.ok and gap.first_break is not None and gap.first_break.seq == 4


def test_verify_when_key_id_unknown_then_named_and_not_authentic():
    rows = sealed_log(3)
    other = AuditKeys([derive("master:other", bytes(32))])

    report = verify_sequence(rows, other)

    assert report.ok and not report.authentic and report.unknown_keys == [TEST_KEY.kid]


def test_verify_when_unkeyed_records_before_keyed_ones_then_both_checked():
    # a log written before the chain was keyed, continued by a keyed writer
    old = forge_with_sha256(sealed_log(4), 0, sealed_log(4)[0].record, strip_key_ids=True)
    heads = ChainHeads(old[-1].seq, old[-1].global_hash)
    for row in old:
        heads.chains[row.chain] = (row.chain_seq, row.hash)
    new = seal(
        [record("orders.intent.u1", stream_seq=99)], heads, old[-1].recorded_us, key=TEST_KEY
    )

    report = verify_sequence(old + new, TEST_KEYS)
    assert report.ok and report.unkeyed == 4 and not report.authentic

    changed = msgspec.structs.replace(old[1].record, msg_id="forged")
    tampered = [old[0], msgspec.structs.replace(old[1], record=changed), *old[2:], *new]
    bad = verify_sequence(tampered, TEST_KEYS)
    assert bad.first_break is not None and bad.first_break.seq == 2


def test_keys_for_verifying_when_no_key_anywhere_then_none_and_no_key_file_created(tmp_path):
    assert keys_for_verifying({}, tmp_path) is None
    assert not (tmp_path / "master.key").exists()


def test_keys_when_local_master_key_then_writer_and_verifier_agree(tmp_path, recwarn):
    writing = keys_for_writing({}, tmp_path)
    verifying = keys_for_verifying({}, tmp_path)

    assert verifying is not None and writing.active.kid.startswith("master:local-")
    rows = seal([record()], ChainHeads(), 1, key=writing.active)
    assert verify_sequence(rows, verifying).authentic


def test_keys_when_audit_key_set_then_it_signs_and_master_keys_still_verify(tmp_path):
    master = new_entry("m1")
    audit = new_entry("a1")
    before = keys_for_writing({"SIGRELAY_MASTER_KEYS": master}, tmp_path)
    old = seal([record()], ChainHeads(), 1, key=before.active)

    env = {"SIGRELAY_MASTER_KEYS": master, "SIGRELAY_AUDIT_KEY": audit}
    after = keys_for_writing(env, tmp_path)
    heads = ChainHeads(old[-1].seq, old[-1].global_hash)
    heads.chains[old[-1].chain] = (old[-1].chain_seq, old[-1].hash)
    new = seal([record(stream_seq=2)], heads, 2, key=after.active)

    assert before.active.kid == "master:m1" and after.active.kid == "audit:a1"
    verifying = keys_for_verifying(env, tmp_path)
    assert verifying is not None and verify_sequence(old + new, verifying).authentic
    # the chain key is derived (HKDF), never the master key's own bytes
    material = bytes(range(32))
    plain = hmac.new(material, b"prev" + b"digest", hashlib.sha256).digest()
    assert derive("x", material).link(b"prev", b"digest") != plain
