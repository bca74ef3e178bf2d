-- Botpress spoke state: which Botpress Chat user and conversation stand for a
-- contact of a tenant's channel, and which of our messages were already handed
-- to the bot. Not a read store: nothing replays into it; losing it costs one new
-- Botpress user per contact (the bot forgets them), never a message.
CREATE TABLE contact_mappings (
    tenant_id         text NOT NULL,
    channel           text NOT NULL,
    contact_id        text NOT NULL,
    webhook_id        text NOT NULL,  -- the tenant's bot; a user of one bot means nothing to another
    botpress_user_id  text NOT NULL,
    user_key_sealed   text NOT NULL,  -- AES-256-GCM sealed x-user-key, bound to this row's key: never in clear
    conversation_id   text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, contact_id)
);
-- A pushed bot message names only its conversation: back to the contact from there.
CREATE INDEX contact_mappings_by_conversation ON contact_mappings (tenant_id, conversation_id);

-- One row per platform message handed to the bot, so a redelivered or retried
-- message is asked once. Written before the send (Botpress ids empty: "maybe
-- sent", look for it by its metadata before sending again) and completed after.
CREATE TABLE sent_messages (
    tenant_id            text NOT NULL,
    message_id           text NOT NULL,
    conversation_id      text NOT NULL,
    botpress_message_id  text,
    botpress_created_at  timestamptz,
    sent_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, message_id)
);
CREATE INDEX sent_messages_age ON sent_messages (sent_at);
