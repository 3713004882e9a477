-- Which actor host serves which user partition. A host renews its leases
-- every second; a host started with an explicit set of partitions takes
-- them over (epoch + 1), and the previous owner lets go at its next renewal.
-- Appends carry expected versions, so the second or so in which two hosts
-- overlap cannot write anything twice.
CREATE TABLE partition_leases (
    partition  int         PRIMARY KEY,
    owner      text        NOT NULL,
    epoch      bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);
