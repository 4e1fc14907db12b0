-- Remediation plans drafted for an anomaly (later: for an incident). An
-- invalid plan is kept for the record and never offered for approval.
CREATE TABLE plans (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    anomaly_id     INTEGER NOT NULL REFERENCES anomalies (id),
    incident_id    INTEGER,
    backend        TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    plan           TEXT,
    validated      TEXT,
    errors         TEXT    NOT NULL,
    input_tokens   INTEGER NOT NULL,
    output_tokens  INTEGER NOT NULL,
    created_at_ms  INTEGER NOT NULL
);
CREATE INDEX plans_anomaly ON plans (anomaly_id, id);
