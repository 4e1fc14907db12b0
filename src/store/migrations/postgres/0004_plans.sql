-- Remediation plans drafted for an anomaly (later: for an incident). An
-- invalid plan is kept for the record and never offered for approval.
CREATE TABLE plans (
    id             BIGSERIAL PRIMARY KEY,
    anomaly_id     BIGINT  NOT NULL REFERENCES anomalies (id),
    incident_id    BIGINT,
    backend        TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    plan           TEXT,
    validated      TEXT,
    errors         TEXT    NOT NULL,
    input_tokens   BIGINT  NOT NULL,
    output_tokens  BIGINT  NOT NULL,
    created_at_ms  BIGINT  NOT NULL
);
CREATE INDEX plans_anomaly ON plans (anomaly_id, id);
