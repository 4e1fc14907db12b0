-- Approval requests: one per plan offered for approval. plan_ref and
-- incident_ref tie it to stored plans and incidents by id (no foreign key).
CREATE TABLE approval_requests (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_ref       TEXT,
    incident_ref   TEXT    NOT NULL,
    pipeline       TEXT    NOT NULL,
    run_id         TEXT    NOT NULL,
    commit_author  TEXT,
    policy         TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    approved_at_ms INTEGER
);
CREATE INDEX approval_requests_pipeline_status ON approval_requests (pipeline, status);
CREATE INDEX approval_requests_status_expiry ON approval_requests (status, expires_at_ms);

-- Every decision event from chat; a redelivered event is not stored twice,
-- and each person has at most one effective vote per request.
CREATE TABLE approval_votes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  INTEGER NOT NULL,
    platform    TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    user_groups TEXT    NOT NULL,
    decision    TEXT    NOT NULL,
    via         TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL,
    effective   INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    UNIQUE (platform, event_id)
);
CREATE INDEX approval_votes_request ON approval_votes (request_id);
CREATE UNIQUE INDEX approval_votes_one_effective
    ON approval_votes (request_id, platform, user_id) WHERE effective = 1;

-- One row per step of a request: its exact call and dry run, then who
-- claimed it and what running it did. Status: planned, running,
-- succeeded, failed, unknown (was running when its process stopped),
-- skipped (an earlier step failed).
CREATE TABLE executions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      INTEGER NOT NULL,
    step_no         INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    call            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    dry_run         TEXT    NOT NULL,
    outcome         TEXT,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_by      TEXT,
    started_at_ms   INTEGER,
    finished_at_ms  INTEGER,
    UNIQUE (request_id, step_no)
);
CREATE INDEX executions_status ON executions (status);
