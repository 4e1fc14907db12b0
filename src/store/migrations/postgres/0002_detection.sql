-- Detection results on each scored run.
ALTER TABLE runs ADD COLUMN score DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN grade DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN verdict TEXT;

-- Serialised per-pipeline detector state.
CREATE TABLE models (
    pipeline      TEXT    PRIMARY KEY,
    version       BIGINT  NOT NULL,
    state         TEXT    NOT NULL,
    last_run_pk   BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL
);

-- An abnormal stretch of one pipeline: opened by the first abnormal run,
-- extended by the next abnormal runs, closed by a normal one.
CREATE TABLE anomalies (
    id             BIGSERIAL PRIMARY KEY,
    pipeline       TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    first_run_pk   BIGINT  NOT NULL,
    last_run_pk    BIGINT  NOT NULL,
    run_count      BIGINT  NOT NULL,
    max_grade      DOUBLE PRECISION    NOT NULL,
    detail         TEXT    NOT NULL,
    opened_at_ms   BIGINT  NOT NULL,
    updated_at_ms  BIGINT  NOT NULL,
    closed_at_ms   BIGINT
);
CREATE INDEX anomalies_pipeline_status ON anomalies (pipeline, status);
CREATE INDEX anomalies_opened ON anomalies (opened_at_ms);

-- Pipelines whose normal was declared changed by a person; the detector
-- fast-forwards to the new level from this run on.
CREATE TABLE baseline_resets (
    id            BIGSERIAL PRIMARY KEY,
    pipeline      TEXT    NOT NULL,
    metric        TEXT,
    requested_by  TEXT    NOT NULL,
    at_ms         BIGINT  NOT NULL,
    applied       BIGINT  NOT NULL DEFAULT 0
);
