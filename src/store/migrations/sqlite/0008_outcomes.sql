-- What became of each offered plan step: one row per step of an approval
-- request, written when the request is opened and moved forward in the
-- same transaction as each change of the request (approved, rejected,
-- expired, superseded, executed, failed) and when the next run verifies
-- the fix (healed, not_healed). Track records are read from here.
CREATE TABLE plan_outcomes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      INTEGER NOT NULL,
    step_no         INTEGER NOT NULL,
    incident_id     INTEGER,
    plan_id         INTEGER,
    pipeline        TEXT    NOT NULL,
    playbook        TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    signature       TEXT    NOT NULL,
    fate            TEXT    NOT NULL,
    approved        INTEGER NOT NULL DEFAULT 0,
    automatic       INTEGER NOT NULL DEFAULT 0,
    reason          TEXT,
    minutes_to_heal INTEGER,
    offered_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    UNIQUE (request_id, step_no)
);
CREATE INDEX plan_outcomes_fix ON plan_outcomes (pipeline, playbook, action);
CREATE INDEX plan_outcomes_incident ON plan_outcomes (incident_id, fate);

-- Pipelines on which people stopped automatic runs (earned autonomy and
-- configured automatic remediation alike); a row means stopped.
CREATE TABLE autonomy_stops (
    pipeline       TEXT    PRIMARY KEY,
    stopped_by     TEXT    NOT NULL,
    via            TEXT    NOT NULL,
    stopped_at_ms  INTEGER NOT NULL
);
