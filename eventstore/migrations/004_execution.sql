-- Execution and the paper exchange find what they must recover at start
-- through these partial indexes, without reading the rest of the log:
-- the account streams with orders sent (a submitting record whose report is
-- missing is an order whose outcome must be looked up at the broker), and
-- the paper exchange's account books.
CREATE INDEX events_execution_submitting ON events (stream, idempotency_key)
    WHERE type = 'execution.submitting';
CREATE INDEX events_paper_accounts ON events (stream)
    WHERE type = 'paper.account_opened';
