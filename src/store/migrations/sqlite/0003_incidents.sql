-- One ongoing problem of one pipeline: opened by an abnormal run, updated
-- by the abnormal runs that follow within the grouping window, moved
-- through its statuses until resolved or dismissed.
CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline        TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    max_grade       REAL    NOT NULL,
    anomaly_id      INTEGER,
    first_run_pk    INTEGER NOT NULL,
    last_run_pk     INTEGER NOT NULL,
    run_count       INTEGER NOT NULL,
    opened_at_ms    INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    resolved_at_ms  INTEGER,
    route_platform  TEXT,
    route_channel   TEXT,
    root_ref        TEXT,
    verdict         TEXT    NOT NULL,
    latest_run      TEXT    NOT NULL,
    silenced        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX incidents_pipeline_status ON incidents (pipeline, status);

-- Durable chat delivery: every message pipemedic sends is queued here first
-- and delivered per channel in id order.
CREATE TABLE chat_outbox (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id         INTEGER,
    platform            TEXT    NOT NULL,
    channel             TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    payload             TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms  INTEGER NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    sent_ref            TEXT,
    sent_ts             TEXT,
    last_error          TEXT
);
CREATE INDEX chat_outbox_queue ON chat_outbox (platform, status, channel, id);
CREATE INDEX chat_outbox_sent ON chat_outbox (platform, channel, sent_ts);

-- Approve / reject decisions from reactions and buttons, once per platform event.
CREATE TABLE chat_decisions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL,
    platform     TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    decision     TEXT    NOT NULL,
    via          TEXT    NOT NULL,
    message_ref  TEXT    NOT NULL,
    added        INTEGER NOT NULL DEFAULT 1,
    at_ms        INTEGER NOT NULL,
    UNIQUE (platform, event_id)
);
CREATE INDEX chat_decisions_incident ON chat_decisions (incident_id);

-- Pipelines (globs) whose alerts are muted until a time.
CREATE TABLE silences (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline  TEXT    NOT NULL,
    until_ms  INTEGER NOT NULL,
    by_user   TEXT    NOT NULL,
    at_ms     INTEGER NOT NULL
);
