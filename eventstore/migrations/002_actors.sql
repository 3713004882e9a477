-- Per-user data keys, wrapped by a master key. Deliberately OUTSIDE the
-- immutable event log: deleting a user's row is crypto-shredding, after
-- which the sealed tokens in their events can never be read again.
CREATE TABLE user_keys (
    user_id     text        PRIMARY KEY,
    kid         text        NOT NULL,   -- the master key that wraps it
    key_version bigint      NOT NULL,   -- names this data key (sealed secrets carry it)
    nonce       bytea       NOT NULL,
    ciphertext  bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One broker account belongs to one user at a time: claimed before the
-- AccountLinked event is appended, released on unlink or delete.
CREATE TABLE account_claims (
    account_id text        PRIMARY KEY,
    user_id    text        NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_claims_user ON account_claims (user_id);

-- The actor host builds its channel -> subscribers index at start from these
-- events alone; this index makes that read skip everything else in the log.
CREATE INDEX events_membership ON events (position)
    WHERE type IN ('user.registered', 'user.subscribed', 'user.unsubscribed', 'user.deleted');
