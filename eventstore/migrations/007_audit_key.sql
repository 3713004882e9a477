-- The audit chain is keyed: a record's `hash` and `global_hash` are
-- HMAC-SHA256 under an audit key the database never holds, named by
-- `key_id` (services/audit/keys.py), so a superuser who rewrites a row cannot
-- recompute the links that follow it. Rows written before this migration
-- keep `key_id` NULL: they were linked with plain SHA-256, and verify checks
-- them that way, reporting them as unkeyed (services/audit/chain.py).
ALTER TABLE audit_records ADD COLUMN key_id text;
