//! The description against the code: the committed `docs/openapi.json` is what the code
//! generates; every scoped route is described and every described `/v1` operation is scoped;
//! each description of a domain view has exactly the view's fields.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

fn spec() -> Value {
    serde_json::from_str(&spec_json()).unwrap()
}

#[test]
fn the_committed_description_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == spec_json(),
        "docs/openapi.json differs from what the code generates: run `cargo run -q -- openapi > docs/openapi.json`"
    );
}

#[test]
fn it_is_openapi_3_1_with_the_bearer_scheme() {
    let spec = spec();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        spec["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"],
        "bearer"
    );
}

#[test]
fn every_scoped_route_is_described_and_every_v1_operation_is_scoped() {
    let spec = spec();
    let described: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .filter(|(_, path)| path.starts_with("/v1/"))
        .collect();
    let scoped: BTreeSet<(String, String)> = crate::scopes::ROUTES
        .iter()
        .map(|(method, path, _)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(described, scoped);
    for (method, path) in &described {
        let operation = &spec["paths"][path][method.to_lowercase()];
        let scopes = &operation["security"][0][SECURITY_SCHEME];
        assert!(!scopes.as_array().unwrap().is_empty(), "{method} {path}");
        for status in ["400", "401", "403", "500"] {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} {status}"
            );
        }
    }
}

#[test]
fn idempotent_creates_describe_their_headers() {
    let spec = spec();
    for path in [
        "/v1/payments",
        "/v1/payments/{id}/refunds",
        "/v1/sellers/{seller_id}/payouts",
    ] {
        let operation = &spec["paths"][path]["post"];
        let parameters = operation["parameters"].as_array().unwrap();
        assert!(
            parameters
                .iter()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
            "{path}"
        );
        assert!(operation["responses"]["201"]["headers"]["Idempotent-Replayed"].is_object());
    }
    assert!(
        spec["paths"]["/v1/payments"]["post"]["responses"]["503"]["headers"]["Retry-After"]
            .is_object()
    );
}

/// The property names of a component schema.
fn properties(spec: &Value, schema: &str) -> BTreeSet<String> {
    spec["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(value: &impl serde::Serialize) -> BTreeSet<String> {
    serde_json::to_value(value)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn described_views_have_the_fields_of_the_real_ones() {
    use ferropay::payin::model::*;
    let spec = spec();
    let order = OrderView {
        id: "po_1".into(),
        order_id: "ord_1".into(),
        seller_id: "s".into(),
        amount: 1,
        status: OrderStatus::Pending,
    };
    let buyer = BuyerView {
        id: "b".into(),
        email: None,
    };
    let payment = PaymentView {
        id: "pay_1".into(),
        checkout_id: "c".into(),
        status: PaymentStatus::Processing,
        amount: 1,
        currency: "USD".into(),
        psp: "sandbox".into(),
        redirect_url: None,
        return_url: None,
        failure_code: None,
        buyer: buyer.clone(),
        orders: vec![order.clone()],
        created_at: "t".into(),
        updated_at: "t".into(),
    };
    assert_eq!(keys(&payment), properties(&spec, "Payment"));
    assert_eq!(keys(&order), properties(&spec, "Order"));
    assert_eq!(keys(&buyer), properties(&spec, "Buyer"));
    let refund = ferropay::refund::RefundView {
        id: "re_1".into(),
        payment_id: "pay_1".into(),
        order_id: "ord_1".into(),
        seller_id: "s".into(),
        amount: 1,
        currency: "USD".into(),
        status: "pending".into(),
        failure_code: None,
        created_at: "t".into(),
    };
    assert_eq!(keys(&refund), properties(&spec, "Refund"));
    let payout = ferropay::payout::PayoutView {
        id: "po_1".into(),
        seller_id: "s".into(),
        amount: 1,
        currency: "USD".into(),
        status: "pending".into(),
        failure_code: None,
        created_at: "t".into(),
        updated_at: "t".into(),
    };
    assert_eq!(keys(&payout), properties(&spec, "Payout"));
    let balance = ferropay::wallet::WalletBalance {
        currency: "USD".into(),
        amount: 1,
        available: 1,
        payouts_in_flight: 0,
    };
    assert_eq!(keys(&balance), properties(&spec, "WalletBalance"));
    let event = ferropay::events::Event {
        id: "obx_1".into(),
        event_type: "payment.succeeded".into(),
        aggregate_id: "pay_1".into(),
        created_at: "t".into(),
        data: Value::Null,
    };
    assert_eq!(keys(&event), properties(&spec, "Event"));
    let key = ferropay::api_keys::KeyView {
        id: "key_1".into(),
        name: "n".into(),
        scopes: vec![],
        created_at: "t".into(),
        revoked_at: None,
    };
    assert_eq!(keys(&key), properties(&spec, "ApiKey"));
    let endpoint = ferropay::webhooks::endpoints::EndpointView {
        id: "we_1".into(),
        url: "u".into(),
        event_types: vec![],
        description: None,
        enabled: true,
        disabled_reason: None,
        previous_secret_expires_at: None,
        created_at: "t".into(),
        secret: Some("whsec".into()),
    };
    assert_eq!(keys(&endpoint), properties(&spec, "WebhookEndpoint"));
    let attempt = ferropay::webhooks::deliver::AttemptView {
        attempted_at: "t".into(),
        status_code: None,
        latency_ms: 1,
        error: None,
    };
    assert_eq!(keys(&attempt), properties(&spec, "DeliveryAttempt"));
    let delivery = ferropay::webhooks::deliver::DeliveryView {
        id: "whd_1".into(),
        endpoint_id: "we_1".into(),
        event_id: "obx_1".into(),
        event_type: "payment.succeeded".into(),
        status: "pending".into(),
        attempts: vec![attempt],
        created_at: "t".into(),
    };
    assert_eq!(keys(&delivery), properties(&spec, "Delivery"));
}
