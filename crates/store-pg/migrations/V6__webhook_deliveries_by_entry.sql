-- The evidence reports read the deliveries of an alert's entry (crates/webhooks,
-- `Outbox::of_entries`); delivered rows keep their record (only the payload is dropped).
CREATE INDEX webhook_deliveries_entry ON webhook_deliveries(tenant, seq);
