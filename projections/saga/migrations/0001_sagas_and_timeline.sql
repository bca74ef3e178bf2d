-- Saga read store: one row per saga (its state now) and one timeline row per saga event.
-- The operator dashboard and the saga driver's deadline timer read these.
CREATE TABLE sagas (
    saga_id          uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    saga_type        text NOT NULL,
    state            text NOT NULL CHECK (state IN ('running', 'waiting', 'failed', 'compensating', 'compensated',
                                                    'completed', 'aborted', 'needs_attention')),
    current_step     text NOT NULL DEFAULT '',
    correlation_id   text NOT NULL,
    started_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          bigint NOT NULL,
    error            text NOT NULL DEFAULT '',
    input_json       text NOT NULL DEFAULT '{}',
    pending_attempt  integer,
    deadline_at      timestamptz            -- NULL unless a request awaits its answer
);
CREATE INDEX sagas_tenant ON sagas (tenant_id, started_at);
CREATE INDEX sagas_state ON sagas (state, started_at);
CREATE INDEX sagas_deadline ON sagas (deadline_at) WHERE deadline_at IS NOT NULL;

CREATE TABLE saga_events (
    saga_id       uuid NOT NULL,
    version       bigint NOT NULL,
    tenant_id     text NOT NULL,
    event_type    text NOT NULL,          -- short name: StepRequested, OperatorActed, …
    step          text NOT NULL DEFAULT '',
    summary       text NOT NULL DEFAULT '',
    payload_json  text NOT NULL DEFAULT '{}',  -- the event's payload fields; mask before showing
    occurred_at   timestamptz NOT NULL,
    actor         text NOT NULL,
    event_id      uuid NOT NULL UNIQUE,
    PRIMARY KEY (saga_id, version)
);
