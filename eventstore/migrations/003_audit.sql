-- The audit log: every message that crossed the bus, redacted, hash-chained.
--
-- Written only by the audit service's single writer (services/audit/writer.py),
-- which holds a transaction-level advisory lock while it appends, assigns
-- `seq` (gapless, = commit order) itself and computes the hashes in Python:
--
--   content     = canonical JSON of the row's content (services/audit/chain.py)
--   digest      = sha256(content)
--   hash        = sha256(prev_hash        || digest)   -- the row's own chain
--   global_hash = sha256(global_prev_hash || digest)   -- every row, in seq order
--
-- A row's own chain is `user:<user_id>` when the message concerns a user, else
-- `system`; `chain_seq` counts from 1 in each chain; the first link of any
-- chain has a previous hash of 32 zero bytes. `sigrelay audit verify`
-- recomputes both chains from the rows alone.
--
-- (stream, stream_seq) is the JetStream position: a redelivered message is
-- recognised and appends nothing. The table is append-only: a trigger
-- refuses UPDATE, DELETE and TRUNCATE, so tampering needs the table owner
-- or a superuser to disable it first, and verify still catches the change.

CREATE TABLE audit_records (
    seq              bigint      PRIMARY KEY CHECK (seq >= 1),
    recorded_at      timestamptz NOT NULL,
    subject          text        NOT NULL,
    stream           text        NOT NULL,
    stream_seq       bigint      NOT NULL,
    type             text        NOT NULL,  -- the message's `type`; `unparsed` when not JSON
    msg_id           text        NOT NULL,  -- the message's `id`, else Nats-Msg-Id, else stream:seq
    correlation_id   text        NOT NULL DEFAULT '',
    causation_id     text        NOT NULL DEFAULT '',
    user_id          text,
    trace_id         text,                  -- from the `traceparent` header
    ts_ns            bigint,                -- the message's own `ts`
    chain            text        NOT NULL,  -- `user:<user_id>` or `system`
    chain_seq        bigint      NOT NULL CHECK (chain_seq >= 1),
    headers          jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- redacted
    payload          jsonb,                 -- redacted; NULL when the body was not JSON
    raw_text         text,                  -- redacted body text when it was not JSON
    prev_hash        bytea       NOT NULL,
    hash             bytea       NOT NULL,
    global_prev_hash bytea       NOT NULL,
    global_hash      bytea       NOT NULL
);

CREATE UNIQUE INDEX audit_records_position ON audit_records (stream, stream_seq);
CREATE UNIQUE INDEX audit_records_chain ON audit_records (chain, chain_seq);
-- text_pattern_ops serves equality and the prefix match raw messages need
-- (their correlation id is the dedup id `<channel>:<message id>:<revision>`)
CREATE INDEX audit_records_correlation ON audit_records (correlation_id text_pattern_ops);
CREATE INDEX audit_records_user ON audit_records (user_id, seq) WHERE user_id IS NOT NULL;
CREATE INDEX audit_records_msg_id ON audit_records (msg_id);
CREATE INDEX audit_records_recorded_at ON audit_records (recorded_at);

CREATE FUNCTION audit_records_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_records is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_records_no_change
    BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_append_only();

CREATE TRIGGER audit_records_no_truncate
    BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only();
