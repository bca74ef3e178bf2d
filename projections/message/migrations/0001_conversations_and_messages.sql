-- Message read store: one row per conversation, one per message (its current
-- delivery status), one per status a message went through. Every key starts
-- with the tenant: every query names it.
CREATE TABLE conversations (
    tenant_id           text NOT NULL,
    conversation_id     uuid NOT NULL,
    channel             text NOT NULL,
    channel_account_id  text NOT NULL,
    contact_id          text NOT NULL,
    status              text NOT NULL CHECK (status IN ('open', 'closed')),
    message_count       bigint NOT NULL DEFAULT 0,
    started_at          timestamptz NOT NULL,
    last_message_at     timestamptz,
    last_activity_at    timestamptz NOT NULL,  -- last_message_at, or started_at before the first message
    version             bigint NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id)
);
CREATE INDEX conversations_inbox ON conversations (tenant_id, last_activity_at DESC, conversation_id DESC);
CREATE INDEX conversations_channel_inbox ON conversations (tenant_id, channel, last_activity_at DESC, conversation_id DESC);

CREATE TABLE messages (
    tenant_id        text NOT NULL,
    conversation_id  uuid NOT NULL,
    message_id       text NOT NULL,
    sequence         bigint NOT NULL,
    direction        text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    text             text NOT NULL,
    attachments      jsonb NOT NULL DEFAULT '[]',
    in_reply_to      text NOT NULL DEFAULT '',
    status           text NOT NULL CHECK (status IN ('received', 'queued', 'sent', 'delivered', 'read', 'failed')),
    status_reason    text NOT NULL DEFAULT '',
    received_at      timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          bigint NOT NULL,  -- aggregate version of the message's last change
    PRIMARY KEY (tenant_id, conversation_id, message_id)
);
CREATE UNIQUE INDEX messages_in_order ON messages (tenant_id, conversation_id, sequence);

CREATE TABLE message_status_history (
    tenant_id        text NOT NULL,
    conversation_id  uuid NOT NULL,
    version          bigint NOT NULL,
    message_id       text NOT NULL,
    status           text NOT NULL,
    previous_status  text NOT NULL DEFAULT '',
    reason           text NOT NULL DEFAULT '',
    event_id         uuid NOT NULL UNIQUE,
    correlation_id   text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, version)
);
CREATE INDEX message_status_history_by_message ON message_status_history (tenant_id, conversation_id, message_id, version);
