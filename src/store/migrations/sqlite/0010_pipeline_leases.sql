-- One owner per pipeline across replicas sharing this database. The holder
-- of a pipeline's lease is the only replica that scores its runs; it renews
-- the lease by heartbeat, and another replica takes the pipeline over once
-- `expires_at_ms` has passed by the database's clock. Unused on SQLite
-- (one process owns everything), kept so both backends have one schema.
CREATE TABLE pipeline_leases (
    pipeline        TEXT    PRIMARY KEY,
    holder          TEXT    NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    acquired_at_ms  INTEGER NOT NULL
);
CREATE INDEX pipeline_leases_holder ON pipeline_leases (holder);

-- Stored runs waiting for their pipeline's owner to score them. The owner
-- claims rows in run order (`FOR UPDATE SKIP LOCKED`) and deletes them once
-- their verdicts are stored; a row outlives a dead owner, so the next one
-- scores it.
CREATE TABLE scoring_queue (
    run_pk          INTEGER PRIMARY KEY,
    pipeline        TEXT    NOT NULL,
    enqueued_by     TEXT    NOT NULL,
    enqueued_at_ms  INTEGER NOT NULL
);
CREATE INDEX scoring_queue_pipeline ON scoring_queue (pipeline, run_pk);

-- How many times a verdict was written on the run, and which replica wrote
-- it (set with several replicas): the exactly-once record of scoring.
ALTER TABLE runs ADD COLUMN scored_times INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN scored_by TEXT;
