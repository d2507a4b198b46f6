//! Which API key scopes open which route: one table, read by the [`crate::extract::ApiKey`]
//! extractor on every request and by the OpenAPI description (each operation's `security`), so
//! the two cannot disagree. A route missing here lets no key in.

use axum::http::Method;
use ferropay::api_keys::Scope::{self, Operator, Payments, Payouts, ReadOnly};

/// The scopes, any one of which lets a key call `method route` (`route` as the router spells
/// it: `/v1/payments/{id}`). The first is the one a 403 names.
pub fn allowed(method: &Method, route: &str) -> &'static [Scope] {
    ROUTES
        .iter()
        .find(|(m, r, _)| *m == method.as_str() && *r == route)
        .map(|(_, _, scopes)| *scopes)
        .unwrap_or(&[])
}

/// Reading payments and refunds.
const READ_PAYMENTS: &[Scope] = &[Payments, ReadOnly, Operator];
/// Reading payouts.
const READ_PAYOUTS: &[Scope] = &[Payouts, ReadOnly, Operator];
/// Reading what only an operator or an auditor reads.
const READ_OPERATIONS: &[Scope] = &[Operator, ReadOnly];

/// `(method, route, scopes)` of every authenticated route.
pub const ROUTES: &[(&str, &str, &[Scope])] = &[
    ("POST", "/v1/payments", &[Payments]),
    ("GET", "/v1/payments", READ_PAYMENTS),
    ("GET", "/v1/payments/{id}", READ_PAYMENTS),
    ("POST", "/v1/payments/{id}/refunds", &[Payments]),
    ("GET", "/v1/payments/{id}/refunds", READ_PAYMENTS),
    ("GET", "/v1/refunds", READ_PAYMENTS),
    ("GET", "/v1/payments/{id}/disputes", READ_PAYMENTS),
    ("GET", "/v1/disputes", READ_PAYMENTS),
    ("POST", "/v1/disputes/{id}/evidence", &[Payments]),
    (
        "GET",
        "/v1/sellers/{seller_id}/wallet",
        &[Payments, Payouts, ReadOnly, Operator],
    ),
    ("POST", "/v1/sellers/{seller_id}/payouts", &[Payouts]),
    ("GET", "/v1/sellers/{seller_id}/payouts", READ_PAYOUTS),
    ("GET", "/v1/payouts", READ_PAYOUTS),
    (
        "PUT",
        "/v1/sellers/{seller_id}/psp_accounts/{psp}",
        &[Payouts, Operator],
    ),
    ("GET", "/v1/events", READ_OPERATIONS),
    ("GET", "/v1/reconciliation/breaks", READ_OPERATIONS),
    (
        "POST",
        "/v1/reconciliation/breaks/{id}/resolve",
        &[Operator],
    ),
    ("POST", "/v1/reconciliation/runs", &[Operator]),
    (
        "GET",
        "/v1/reconciliation/settlement_files/{file}",
        READ_OPERATIONS,
    ),
    ("GET", "/v1/api_keys", &[Operator]),
    ("POST", "/v1/api_keys/{id}/revoke", &[Operator]),
    ("POST", "/v1/webhook_endpoints", &[Operator]),
    ("GET", "/v1/webhook_endpoints", &[Operator]),
    ("GET", "/v1/webhook_endpoints/{id}", &[Operator]),
    ("POST", "/v1/webhook_endpoints/{id}", &[Operator]),
    ("DELETE", "/v1/webhook_endpoints/{id}", &[Operator]),
    (
        "POST",
        "/v1/webhook_endpoints/{id}/roll_secret",
        &[Operator],
    ),
    ("GET", "/v1/webhook_endpoints/{id}/deliveries", &[Operator]),
    ("POST", "/v1/webhook_deliveries/{id}/redeliver", &[Operator]),
];
