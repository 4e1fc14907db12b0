-- Runs as received (the normalised Run as JSON), with the columns queries need.
CREATE TABLE runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline        TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    started_at_ms   INTEGER,
    finished_at_ms  INTEGER,
    event_time_ms   INTEGER NOT NULL,
    duration_s      REAL,
    stage           TEXT,
    commit_sha      TEXT,
    body            TEXT    NOT NULL,
    ingested_at_ms  INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    UNIQUE (pipeline, run_id, attempt)
);
CREATE INDEX runs_pipeline_time ON runs (pipeline, event_time_ms);
CREATE INDEX runs_time ON runs (event_time_ms);

-- One row per metric value derived from a run.
CREATE TABLE metric_samples (
    run_pk    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pipeline  TEXT    NOT NULL,
    metric    TEXT    NOT NULL,
    value     REAL    NOT NULL,
    ts_ms     INTEGER NOT NULL,
    PRIMARY KEY (run_pk, metric)
);
CREATE INDEX metric_samples_series ON metric_samples (pipeline, metric, ts_ms);

-- Delivery / event ids already handled, so redeliveries are no-ops.
CREATE TABLE processed_events (
    source         TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (source, event_id)
);

-- Small durable state of the ingest sources: CodePipeline executions being
-- assembled from separate events, poll cursors.
CREATE TABLE ingest_state (
    kind          TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    value         TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);

-- Append-only record of what pipemedic saw, decided and did.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms    INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    subject  TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (at_ms);
