-- Scoped API keys: each key may do only what its scopes allow (`ferropay::api_keys::Scope`),
-- stored as the scopes' names separated by spaces. Keys made before scopes existed could do
-- everything, and keep doing so: the default names every scope that writes.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'payments payouts operator';
