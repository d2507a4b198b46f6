-- Reconciliation finds a settlement file's refund line by the PSP's refund id (portable SQL).
CREATE INDEX refunds_psp_refund_id ON refunds (psp_refund_id);
