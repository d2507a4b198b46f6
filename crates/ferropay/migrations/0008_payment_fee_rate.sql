-- The platform's fee rate is the payment's own, fixed when it is created: whichever process
-- captures it later (a webhook on any instance, the poller, `ferropay reconcile` healing it)
-- splits the capture the same way. NULL for payments from before: the capturing process's rate.
ALTER TABLE payments ADD COLUMN platform_fee_bps BIGINT;
