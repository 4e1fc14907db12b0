-- Runs as received (the normalised Run as JSON), with the columns queries need.
CREATE TABLE runs (
    id              BIGSERIAL PRIMARY KEY,
    pipeline        TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    attempt         BIGINT  NOT NULL,
    status          TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    started_at_ms   BIGINT,
    finished_at_ms  BIGINT,
    event_time_ms   BIGINT  NOT NULL,
    duration_s      DOUBLE PRECISION,
    stage           TEXT,
    commit_sha      TEXT,
    body            TEXT    NOT NULL,
    ingested_at_ms  BIGINT  NOT NULL,
    updated_at_ms   BIGINT  NOT NULL,
    UNIQUE (pipeline, run_id, attempt)
);
CREATE INDEX runs_pipeline_time ON runs (pipeline, event_time_ms);
CREATE INDEX runs_time ON runs (event_time_ms);

-- One row per metric value derived from a run.
CREATE TABLE metric_samples (
    run_pk    BIGINT  NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pipeline  TEXT    NOT NULL,
    metric    TEXT    NOT NULL,
    value     DOUBLE PRECISION    NOT NULL,
    ts_ms     BIGINT  NOT NULL,
    PRIMARY KEY (run_pk, metric)
);
CREATE INDEX metric_samples_series ON metric_samples (pipeline, metric, ts_ms);

-- Delivery / event ids already handled, so redeliveries are no-ops.
CREATE TABLE processed_events (
    source         TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    received_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (source, event_id)
);

-- Small durable state of the ingest sources: CodePipeline executions being
-- assembled from separate events, poll cursors.
CREATE TABLE ingest_state (
    kind          TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    value         TEXT    NOT NULL,
    updated_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (kind, key)
);

-- Append-only record of what pipemedic saw, decided and did.
CREATE TABLE audit_log (
    id       BIGSERIAL PRIMARY KEY,
    at_ms    BIGINT  NOT NULL,
    kind     TEXT    NOT NULL,
    subject  TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (at_ms);
