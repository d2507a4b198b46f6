//! The OpenAPI description and the reference page, as the running server serves them: the
//! description is the committed `docs/openapi.json`, and `/docs` loads nothing from elsewhere.

use reqwest::StatusCode;
use serde_json::Value;

use crate::db_test;
use crate::helpers::*;

async fn the_description_and_its_reference_are_served(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let response = app
        .http
        .get(format!("{}/openapi.json", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.text().await.unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
    .unwrap();
    assert_eq!(served, committed);
    let spec: Value = serde_json::from_str(&served).unwrap();
    assert!(spec["paths"]["/v1/payments"]["get"].is_object());

    let page = app
        .http
        .get(format!("{}/docs", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    // Every asset is ours: no absolute URL to load a script or style from.
    for needle in ["src=\"http", "href=\"http", "src=\"//", "@import"] {
        assert!(!html.contains(needle), "{needle}");
    }
    let script = app
        .http
        .get(format!("{}/docs/docs.js", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    let js = script.text().await.unwrap();
    assert!(js.contains("/openapi.json") && !js.contains("http"));

    // And the CLI prints the same description.
    let (code, out, _) = run_cli(&["openapi"]);
    assert_eq!(code, 0);
    assert_eq!(out, committed);
}

db_test!(the_description_and_its_reference_are_served);
