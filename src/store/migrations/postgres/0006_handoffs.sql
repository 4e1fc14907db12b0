-- A running step's claimant refreshes heartbeat_at_ms while its call is in
-- flight; only a step whose heartbeat has gone quiet for longer than the
-- lease is given up as unknown, so a live replica's step is left alone.
ALTER TABLE executions ADD COLUMN heartbeat_at_ms BIGINT;
UPDATE executions SET heartbeat_at_ms = started_at_ms WHERE status = 'running';

-- A chat decision is handed to the healing task in memory; handled_at_ms
-- is set once it has been acted on, so a decision whose process stopped
-- before that is picked up again by the next sweep (votes are stored once
-- per platform event id, so acting twice records one vote).
ALTER TABLE chat_decisions ADD COLUMN handled_at_ms BIGINT;
-- When a sweep last took a lost decision on (one replica wins the update).
ALTER TABLE chat_decisions ADD COLUMN replayed_at_ms BIGINT;
UPDATE chat_decisions SET handled_at_ms = at_ms;
CREATE INDEX chat_decisions_unhandled ON chat_decisions (at_ms) WHERE handled_at_ms IS NULL;
