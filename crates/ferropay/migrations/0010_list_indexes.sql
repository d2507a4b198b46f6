-- Lists with keyset pagination (crates/ferropay/src/lists.rs, events.rs): each list walks an
-- index on (created_at_ms, id), alone or after the filter it is most often asked with.
CREATE INDEX payments_created ON payments (created_at_ms, id);
CREATE INDEX payments_checkout_created ON payments (checkout_id, created_at_ms);
CREATE INDEX payments_buyer_created ON payments (buyer_id, created_at_ms);
CREATE INDEX payments_status_created ON payments (status, created_at_ms);
CREATE INDEX refunds_created ON refunds (created_at_ms, id);
CREATE INDEX payouts_created ON payouts (created_at_ms, id);
CREATE INDEX payouts_seller_created ON payouts (seller_id, created_at_ms);
CREATE INDEX outbox_created ON outbox (created_at_ms, id);
CREATE INDEX outbox_aggregate ON outbox (aggregate_id, created_at_ms);
