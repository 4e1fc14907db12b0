-- The six built-in metrics of a finished run become columns of the run:
-- NULL when the run did not report the metric or has not finished, as
-- Run::builtin_samples gives them. Their series are read from runs through
-- runs_pipeline_time (event_time_ms is the time of a sample).
-- Per-stage durations and custom metrics are read from the runs' bodies,
-- which hold them, so metric_samples goes: a run costs one row and its
-- index entries instead of one more row (and two index entries) per
-- metric, most of the time a backfill took.
ALTER TABLE runs ADD COLUMN sample_duration_s DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN sample_test_failure_rate DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN sample_cpu_peak_pct DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN sample_mem_peak_mb DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN sample_error_rate DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN sample_latency_p95_ms DOUBLE PRECISION;

UPDATE runs SET
    sample_duration_s = (SELECT value FROM metric_samples s WHERE s.run_pk = runs.id AND s.metric = 'duration_s'),
    sample_test_failure_rate = (SELECT value FROM metric_samples s WHERE s.run_pk = runs.id AND s.metric = 'test_failure_rate'),
    sample_cpu_peak_pct = (SELECT value FROM metric_samples s WHERE s.run_pk = runs.id AND s.metric = 'cpu_peak_pct'),
    sample_mem_peak_mb = (SELECT value FROM metric_samples s WHERE s.run_pk = runs.id AND s.metric = 'mem_peak_mb'),
    sample_error_rate = (SELECT value FROM metric_samples s WHERE s.run_pk = runs.id AND s.metric = 'error_rate'),
    sample_latency_p95_ms = (SELECT value FROM metric_samples s WHERE s.run_pk = runs.id AND s.metric = 'latency_p95_ms')
WHERE id IN (SELECT DISTINCT run_pk FROM metric_samples);

DROP TABLE metric_samples;
