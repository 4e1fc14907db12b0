-- Processed event ids are pruned by age; this index finds the old ones.
CREATE INDEX processed_events_received ON processed_events (received_at_ms);
