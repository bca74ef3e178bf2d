-- A spoke records `sending` before it calls the platform (hubs/message/delivery.py).
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('received', 'queued', 'sending', 'sent', 'delivered', 'read', 'failed'));
