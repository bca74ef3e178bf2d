-- The dashboard finds a saga by saga, correlation, message or contact id (exact
-- matches), and counts sagas per type over a time window: the inbound-message
-- saga's message and contact ids leave its input for indexed columns.
ALTER TABLE sagas ADD COLUMN message_id text NOT NULL DEFAULT '';
ALTER TABLE sagas ADD COLUMN contact_id text NOT NULL DEFAULT '';
UPDATE sagas SET
    message_id = CASE WHEN jsonb_typeof(input_json::jsonb -> 'message_id') = 'string'
                      AND length(input_json::jsonb ->> 'message_id') <= 200
                      THEN input_json::jsonb ->> 'message_id' ELSE '' END,
    contact_id = CASE WHEN jsonb_typeof(input_json::jsonb -> 'contact_id') = 'string'
                      AND length(input_json::jsonb ->> 'contact_id') <= 200
                      THEN input_json::jsonb ->> 'contact_id' ELSE '' END
WHERE left(ltrim(input_json), 1) = '{' AND (input_json LIKE '%"message\_id"%' OR input_json LIKE '%"contact\_id"%');
CREATE INDEX sagas_correlation ON sagas (correlation_id);
CREATE INDEX sagas_message ON sagas (message_id);
CREATE INDEX sagas_contact ON sagas (contact_id);
-- Statistics read the sagas started within a window (started_at never changes,
-- so this index costs the projector's row updates nothing).
CREATE INDEX sagas_started ON sagas (started_at);
