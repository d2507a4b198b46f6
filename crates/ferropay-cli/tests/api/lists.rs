//! Lists: payments, refunds, payouts and events, filtered and paged with `limit` and
//! `starting_after`; pages stay whole and never repeat while payments are inserted between
//! them; bad parameters are 400s naming them.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every page of `path` (which has a `?`), `limit` at a time, following `starting_after`.
async fn walk(app: &TestApp, path: &str, limit: u32) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let cursor = after
            .as_ref()
            .map(|id| format!("&starting_after={id}"))
            .unwrap_or_default();
        let page = app.get_json(&format!("{path}&limit={limit}{cursor}")).await;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= limit as usize);
        seen.extend(page_ids.iter().cloned());
        if page["has_more"] != true {
            return seen;
        }
        after = page_ids.last().cloned();
    }
    panic!("more than 100 pages");
}

async fn payments_page_newest_first_and_stay_stable_under_inserts(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let mut created = Vec::new();
    for i in 0..5 {
        let payment = app.create_payment(&format!("chk_list_{i}")).await;
        created.push(payment["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(walk(&app, "/v1/payments?", 2).await, newest_first);

    // A client pages while new payments come in: its pages neither repeat nor skip.
    let first = app.get_json("/v1/payments?limit=2").await;
    assert_eq!(ids(&first), newest_first[..2]);
    assert_eq!(first["has_more"], true);
    for i in 5..8 {
        app.create_payment(&format!("chk_list_{i}")).await;
    }
    let mut rest = Vec::new();
    let mut after = ids(&first)[1].clone();
    loop {
        let page = app
            .get_json(&format!("/v1/payments?limit=2&starting_after={after}"))
            .await;
        rest.extend(ids(&page));
        if page["has_more"] != true {
            break;
        }
        after = ids(&page).last().unwrap().clone();
    }
    assert_eq!(rest, newest_first[2..]);

    // Filters.
    let one = app.get_json("/v1/payments?checkout_id=chk_list_3").await;
    assert_eq!(ids(&one), vec![created[3].clone()]);
    assert_eq!(
        app.get_json("/v1/payments?buyer_id=buyer_7").await["data"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    assert_eq!(
        app.get_json("/v1/payments?buyer_id=nobody").await["data"],
        json!([])
    );
    assert_eq!(
        app.get_json("/v1/payments?seller_id=seller_b&limit=100")
            .await["data"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    assert_eq!(
        app.get_json("/v1/payments?seller_id=seller_z").await["data"],
        json!([])
    );
    let paid = app.paid_payment("chk_list_paid").await;
    let succeeded = app.get_json("/v1/payments?status=succeeded").await;
    assert_eq!(
        ids(&succeeded),
        vec![paid["id"].as_str().unwrap().to_owned()]
    );
    assert_eq!(succeeded["data"][0]["orders"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.get_json("/v1/payments?created_lt=2000-01-01T00:00:00Z")
            .await["data"],
        json!([])
    );
    assert_eq!(
        walk(&app, "/v1/payments?created_gte=2000-01-01T00:00:00Z", 100)
            .await
            .len(),
        9
    );

    // Bad parameters name themselves.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("status=paid", "status"),
        ("created_gte=yesterday", "created_gte"),
        ("starting_after=pay_missing", "starting_after"),
        ("colour=blue", "colour"),
    ] {
        let response = app
            .http
            .get(format!("{}/v1/payments?{query}", app.base_url))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{query}");
    }
}

async fn refunds_payouts_and_events_are_listed(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.paid_payment("chk_lists_2").await;
    let payment_id = payment["id"].as_str().unwrap();
    let refund = app
        .post_keyed(
            &format!("/v1/payments/{payment_id}/refunds"),
            "refund-list-1",
            &json!({"order_id": "ord_1", "amount": 500}),
        )
        .await;
    assert_eq!(refund.status(), StatusCode::CREATED);
    let refund: Value = refund.json().await.unwrap();
    let refund_id = refund["id"].as_str().unwrap();
    app.wait_for_item(
        &format!("/v1/payments/{payment_id}/refunds"),
        refund_id,
        "succeeded",
    )
    .await;
    let payout = app
        .post_keyed(
            "/v1/sellers/seller_b/payouts",
            "payout-list-1",
            &json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(payout.status(), StatusCode::CREATED);
    let payout: Value = payout.json().await.unwrap();
    app.wait_for_item(
        "/v1/sellers/seller_b/payouts",
        payout["id"].as_str().unwrap(),
        "paid",
    )
    .await;

    let refunds = app
        .get_json(&format!("/v1/refunds?payment_id={payment_id}"))
        .await;
    assert_eq!(ids(&refunds), vec![refund_id.to_owned()]);
    assert_eq!(refunds["data"][0]["status"], "succeeded");
    assert_eq!(
        app.get_json("/v1/refunds?status=failed").await["data"],
        json!([])
    );
    assert_eq!(
        ids(&app.get_json("/v1/refunds?seller_id=seller_a").await),
        vec![refund_id.to_owned()]
    );

    let payouts = app.get_json("/v1/payouts?seller_id=seller_b").await;
    assert_eq!(
        ids(&payouts),
        vec![payout["id"].as_str().unwrap().to_owned()]
    );
    assert_eq!(payouts["data"][0]["amount"], 250);
    assert_eq!(payouts["data"][0]["status"], "paid");
    assert_eq!(
        app.get_json("/v1/payouts?seller_id=seller_a").await["data"],
        json!([])
    );

    // Events: every outbox row, oldest first, pageable one at a time.
    let all = walk(&app, "/v1/events?", 1).await;
    let stored = app.count("SELECT COUNT(*) FROM outbox").await;
    assert_eq!(all.len() as i64, stored);
    assert_eq!(
        all.iter().collect::<BTreeSet<_>>().len(),
        all.len(),
        "no event twice"
    );
    let first = app.get_json("/v1/events?limit=100").await;
    assert_eq!(first["data"][0]["type"], "payment.succeeded");
    assert_eq!(first["data"][0]["aggregate_id"], payment_id);
    let succeeded = app.get_json("/v1/events?type=refund.succeeded").await;
    assert_eq!(succeeded["data"].as_array().unwrap().len(), 1);
    // After the last event: nothing more, until something happens.
    let last = all.last().unwrap();
    let after = app
        .get_json(&format!("/v1/events?starting_after={last}"))
        .await;
    assert_eq!(after["data"], json!([]));
    assert_eq!(after["has_more"], false);
}

/// Found by schemathesis on PostgreSQL, whose text columns refuse U+0000: a NUL in a body, a
/// query or a path was a 500. Each is a 400 naming where it was.
async fn nul_characters_are_refused_by_name(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let key = app.api_key.clone();
    let send = |request: reqwest::RequestBuilder| {
        let key = key.clone();
        async move {
            let response = request.bearer_auth(key).send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = send(
        app.http
            .post(format!(
                "{}/v1/reconciliation/breaks/brk_1/resolve",
                app.base_url
            ))
            .json(&json!({"reason": "fixed\u{0}"})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("reason"))
    );
    let (status, body) = send(
        app.http
            .post(format!("{}/v1/webhook_endpoints", app.base_url))
            .json(&json!({"url": "http://127.0.0.1:1/", "event_types": ["*"], "description": "a\u{0}"})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("description"))
    );
    let (status, body) = send(
        app.http
            .get(format!("{}/v1/payments?checkout_id=%00", app.base_url)),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("checkout_id"))
    );
    let (status, body) = send(app.http.get(format!("{}/v1/payments/pay%00", app.base_url))).await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("id"))
    );
}

db_test!(
    nul_characters_are_refused_by_name,
    payments_page_newest_first_and_stay_stable_under_inserts,
    refunds_payouts_and_events_are_listed,
);
