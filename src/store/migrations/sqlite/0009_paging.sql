-- The one reminder a plan gets when it is still unapproved at half its
-- expiry: the row is the claim, so however many replicas sweep, one of them
-- queues the reminder, in the same transaction.
CREATE TABLE approval_reminders (
    request_id  INTEGER PRIMARY KEY,
    sent_at_ms  INTEGER NOT NULL
);

-- Pages to the on-call provider (PagerDuty, Opsgenie): at most one trigger
-- and one resolve per incident. A row is claimed (status 'sending') in its
-- own committed transaction before the call; settled rows are never sent
-- again. Status: pending, sending, sent, dead (refused by the provider),
-- cancelled (the incident closed before its trigger went out).
CREATE TABLE pages (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id         INTEGER NOT NULL,
    action              TEXT    NOT NULL,
    provider            TEXT    NOT NULL,
    dedup_key           TEXT    NOT NULL,
    reason              TEXT    NOT NULL,
    event               TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    claimed_by          TEXT,
    claimed_at_ms       INTEGER,
    next_attempt_at_ms  INTEGER NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    sent_at_ms          INTEGER,
    last_error          TEXT,
    UNIQUE (incident_id, action)
);
CREATE INDEX pages_status ON pages (status, next_attempt_at_ms);
