//! Scoped API keys: each scope allowed and refused on each route (403 `insufficient_scope`
//! naming a scope that would do), keys listed and revoked over the API and the CLI, a revoked
//! key refused at once by another instance, and keys from before scopes keep full access.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

use crate::db_test;
use crate::helpers::*;
use ferropay::api_keys::{self, Scope};

/// A key of `scopes` on the app's database.
async fn key(app: &TestApp, scopes: &[Scope]) -> String {
    api_keys::create_scoped(&app.service().store, "scoped", scopes)
        .await
        .unwrap()
        .secret
}

/// A request on `route` as the router spells it, with every `{…}` filled in, as `secret`.
async fn call(app: &TestApp, method: &str, route: &str, secret: &str) -> (StatusCode, Value) {
    let path = route
        .replace("{id}", "missing_id")
        .replace("{seller_id}", "seller_a");
    let mut request = app
        .http
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", app.base_url),
        )
        .bearer_auth(secret);
    if method == "POST" {
        request = request.json(&json!({}));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn each_scope_is_allowed_and_refused_on_each_route(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for scope in Scope::ALL {
        let secret = key(&app, &[scope]).await;
        for (method, route, allowed) in ferropay_http::scopes::ROUTES {
            let (status, body) = call(&app, method, route, &secret).await;
            if allowed.contains(&scope) {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{scope:?} should open {method} {route}: {status} {body}"
                );
                assert!(
                    !status.is_server_error(),
                    "{method} {route}: {status} {body}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{scope:?} on {method} {route}: {body}"
                );
                assert_eq!(body["error"]["code"], "insufficient_scope");
                assert_eq!(body["error"]["type"], "permission_error");
                assert_eq!(
                    body["error"]["required_scope"],
                    allowed[0].as_str(),
                    "{method} {route}"
                );
            }
        }
    }
    // A payments key pays; a read_only key reads what it made, and cannot pay.
    let payments = key(&app, &[Scope::Payments]).await;
    let read_only = key(&app, &[Scope::ReadOnly]).await;
    let created = app
        .http
        .post(format!("{}/v1/payments", app.base_url))
        .bearer_auth(&payments)
        .header("Idempotency-Key", "scoped-1")
        .json(&checkout("chk_scoped_1"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let payment: Value = created.json().await.unwrap();
    let (status, shown) = call(
        &app,
        "GET",
        &format!("/v1/payments/{}", payment["id"].as_str().unwrap()),
        &read_only,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["id"], payment["id"]);
    let refused = app
        .http
        .post(format!("{}/v1/payments", app.base_url))
        .bearer_auth(&read_only)
        .header("Idempotency-Key", "scoped-2")
        .json(&checkout("chk_scoped_2"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
}

async fn a_revoked_key_is_refused_at_once_by_every_instance(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let sibling = app.spawn_sibling().await;
    let doomed = api_keys::create_scoped(&app.service().store, "doomed", &[Scope::ReadOnly])
        .await
        .unwrap();
    let on_sibling = |secret: String| {
        let http = app.http.clone();
        let url = format!("{}/v1/payments", sibling.public_url);
        async move {
            http.get(url)
                .bearer_auth(secret)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(on_sibling(doomed.secret.clone()).await, StatusCode::OK);

    // Listed over the API (no secret), revoked over the API on the first instance …
    let listed = app.get_json("/v1/api_keys").await;
    let entry = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == doomed.id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["scopes"], json!(["read_only"]));
    assert!(entry.get("secret").is_none() && entry["revoked_at"].is_null());
    let revoked = app
        .http
        .post(format!("{}/v1/api_keys/{}/revoke", app.base_url, doomed.id))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert!(revoked.json::<Value>().await.unwrap()["revoked_at"].is_string());
    // A key does not revoke itself over the API.
    let own_id = app.get_json("/v1/api_keys").await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let own = app
        .http
        .post(format!("{}/v1/api_keys/{own_id}/revoke", app.base_url))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::CONFLICT);
    assert_eq!(
        own.json::<Value>().await.unwrap()["error"]["code"],
        "own_key"
    );
    // … and the second instance refuses it on the very next request.
    assert_eq!(
        on_sibling(doomed.secret.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    sibling.shutdown().await;
}

async fn the_cli_makes_lists_and_revokes_scoped_keys(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let url = app.db.url.clone();
    let (code, out, err) = run_cli(&[
        "api-key",
        "create",
        "--name",
        "auditor",
        "--scope",
        "read_only,payouts",
        "--database-url",
        &url,
    ]);
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["scopes"], json!(["payouts", "read_only"]));
    let secret = created["secret"].as_str().unwrap().to_owned();
    let (status, _) = call(&app, "GET", "/v1/payouts", &secret).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&app, "POST", "/v1/reconciliation/runs", &secret).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["required_scope"], "operator");

    let (code, _, err) = run_cli(&[
        "api-key",
        "create",
        "--scope",
        "admin",
        "--database-url",
        &url,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("admin"), "{err}");

    let (code, out, _) = run_cli(&["api-key", "list", "--database-url", &url]);
    assert_eq!(code, 0);
    assert!(!out.contains("sk_"), "list shows no secret");
    assert!(
        out.lines()
            .any(|line| line.contains(created["id"].as_str().unwrap()))
    );

    let id = created["id"].as_str().unwrap();
    let (code, out, _) = run_cli(&["api-key", "revoke", id, "--database-url", &url]);
    assert_eq!(code, 0);
    assert!(serde_json::from_str::<Value>(&out).unwrap()["revoked_at"].is_string());
    let (status, _) = call(&app, "GET", "/v1/payouts", &secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (code, _, _) = run_cli(&["api-key", "revoke", "key_missing", "--database-url", &url]);
    assert_eq!(code, 1);
}

async fn keys_from_before_scopes_keep_full_access(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    // A key as version 8 of the schema wrote it: no scopes column in the INSERT.
    let secret = "sk_from_before_scopes_0123456789";
    let digest = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    sqlx::query(
        "INSERT INTO api_keys (id, name, secret_sha256, created_at_ms) VALUES ('key_old', 'old', $1, 0)",
    )
    .bind(digest)
    .execute(app.service().store.pool())
    .await
    .unwrap();
    for (method, route, _) in ferropay_http::scopes::ROUTES {
        let (status, body) = call(&app, method, route, secret).await;
        assert!(
            status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
            "{method} {route}: {status} {body}"
        );
    }
}

db_test!(
    each_scope_is_allowed_and_refused_on_each_route,
    a_revoked_key_is_refused_at_once_by_every_instance,
    the_cli_makes_lists_and_revokes_scoped_keys,
    keys_from_before_scopes_keep_full_access,
);
