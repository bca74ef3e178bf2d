-- The trace the saga started in (SagaStarted v2): the dashboard shows it and links it
-- to the trace viewer. Sagas started before (or with tracing off) keep ''.
ALTER TABLE sagas ADD COLUMN trace_id text NOT NULL DEFAULT '';
