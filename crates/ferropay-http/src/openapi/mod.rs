//! The OpenAPI 3.1 description of the HTTP API, derived with utoipa from the handlers'
//! `#[utoipa::path]` attributes and the body types in [`schemas`]; each `/v1` operation's
//! security (the bearer key and the scopes that open it) and the errors every such route can
//! answer are added from [`crate::scopes`] and the error shape, so neither is written twice.
//!
//! Served at `GET /openapi.json`, rendered for people at `GET /docs` by a small page of our own
//! (`docs.html`, `docs.js`, no asset from elsewhere), and written to `docs/openapi.json` by
//! `ferropay openapi`; a test fails when the committed file differs from [`spec_json`].

pub mod schemas;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{self, Content, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes;

/// The name of the bearer API key scheme in the description.
pub const SECURITY_SCHEME: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferropay",
        description = "The payment system of an online marketplace: payments through a PSP's hosted page, split across sellers; refunds; disputes; payouts; events; reconciliation.",
        license(name = "Proprietary")
    ),
    paths(
        routes::payments::create,
        routes::payments::list,
        routes::payments::show,
        routes::refunds::create,
        routes::refunds::list,
        routes::refunds::list_all,
        routes::disputes::list,
        routes::disputes::list_all,
        routes::disputes::submit_evidence,
        routes::wallets::show,
        routes::payouts::create,
        routes::payouts::list,
        routes::payouts::list_all,
        routes::sellers::set_psp_account,
        routes::events::list,
        routes::reconciliation::list_breaks,
        routes::reconciliation::resolve_break,
        routes::reconciliation::run,
        routes::reconciliation::settlement_file,
        routes::api_keys::list,
        routes::api_keys::revoke,
        routes::webhook_endpoints::create,
        routes::webhook_endpoints::list,
        routes::webhook_endpoints::show,
        routes::webhook_endpoints::update,
        routes::webhook_endpoints::delete,
        routes::webhook_endpoints::roll_secret,
        routes::webhook_endpoints::deliveries,
        routes::webhook_endpoints::redeliver,
        routes::webhooks::receive,
        routes::pages::payment_status,
        routes::health::healthz,
        routes::metrics::render,
        spec,
        docs,
    ),
    components(schemas(schemas::ErrorBody)),
    modifiers(&Surface),
    tags(
        (name = "payments", description = "Payments of checkouts, split across sellers"),
        (name = "refunds", description = "Money back to buyers, per order"),
        (name = "disputes", description = "Chargebacks: money a buyer's bank took back, and the merchant's answer"),
        (name = "payouts", description = "Money on to sellers"),
        (name = "wallets", description = "What the platform owes each seller"),
        (name = "events", description = "Every state change, oldest first"),
        (name = "reconciliation", description = "Settlement files against the books"),
        (name = "api_keys", description = "Scoped API keys"),
        (name = "webhook_endpoints", description = "Events pushed to merchants' endpoints, signed"),
        (name = "psp", description = "Inbound webhooks of the PSP"),
        (name = "pages", description = "Pages for buyers"),
        (name = "operations", description = "Health, metrics and this description"),
    )
)]
pub struct ApiDoc;

/// Adds what every `/v1` operation shares: the bearer scheme with the scopes that open it
/// (from [`crate::scopes`]), and the error answers any authenticated route can give.
struct Surface;

impl Modify for Surface {
    fn modify(&self, api: &mut openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            SECURITY_SCHEME.to_owned(),
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk_…")
                    .description(Some(
                        "An API key from `ferropay api-key create --scope …`, as \
                         `Authorization: Bearer sk_…`. The scopes listed on an operation are \
                         the ones any of which lets a key call it.",
                    ))
                    .build(),
            ),
        );
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build()
        };
        let retry_later = |description: &str| {
            let retry_after = openapi::header::HeaderBuilder::new()
                .schema(
                    openapi::ObjectBuilder::new()
                        .schema_type(openapi::schema::Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some("Seconds to wait before retrying"))
                .build();
            ResponseBuilder::new()
                .description(description)
                .header("Retry-After", retry_after)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build()
        };
        // What the server's limits answer ([`crate::limits`]), on every operation they cover.
        for (path, item) in api.paths.paths.iter_mut() {
            if ["/healthz", "/metrics"].contains(&path.as_str()) {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut operation.responses.responses;
                responses.entry("503".to_owned()).or_insert_with(|| {
                    retry_later("The server is full (requests in flight, connections) or busy")
                        .into()
                });
                if path.contains('{') {
                    responses.entry("400".to_owned()).or_insert_with(|| {
                        error("A path parameter is not valid UTF-8, holds a control character or is too long").into()
                    });
                }
                if operation.request_body.is_some() {
                    responses.entry("408".to_owned()).or_insert_with(|| {
                        error("The body did not arrive within the body-read deadline").into()
                    });
                    responses
                        .entry("413".to_owned())
                        .or_insert_with(|| error("The body is larger than 64 KiB").into());
                    if path.starts_with("/v1/") {
                        responses.entry("415".to_owned()).or_insert_with(|| {
                            error("The body is not declared as JSON (`Content-Type`)").into()
                        });
                    }
                }
                if path.starts_with("/v1/") {
                    responses.entry("429".to_owned()).or_insert_with(|| {
                        retry_later("This API key is over its rate limit").into()
                    });
                }
            }
        }
        for (path, item) in api.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for (method, operation) in [
                (axum::http::Method::GET, &mut item.get),
                (axum::http::Method::POST, &mut item.post),
                (axum::http::Method::PUT, &mut item.put),
                (axum::http::Method::DELETE, &mut item.delete),
            ] {
                let Some(operation) = operation else {
                    continue;
                };
                let scopes: Vec<&str> = crate::scopes::allowed(&method, path)
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                let note = format!("\n\nScopes (any one): `{}`.", scopes.join("`, `"));
                operation.description =
                    Some(operation.description.take().unwrap_or_default() + &note);
                operation.security = Some(vec![SecurityRequirement::new(SECURITY_SCHEME, scopes)]);
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    ("400", "Bad input: `field` names it"),
                    ("401", "No API key, or not a live one"),
                    (
                        "403",
                        "The key lacks the scope (`insufficient_scope`, `required_scope`)",
                    ),
                    ("404", "No such resource"),
                    ("500", "Internal error (details only in the logs)"),
                ] {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// The description as pretty JSON, as `docs/openapi.json` holds it (with a final newline).
pub fn spec_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the description serializes");
    text.push('\n');
    text
}

/// The OpenAPI 3.1 description of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This description", content_type = "application/json", body = Object)))]
pub async fn spec() -> Response {
    static SPEC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = SPEC.get_or_init(spec_json).clone();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The API reference for people, rendered from `/openapi.json` in the browser.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The reference page", content_type = "text/html", body = String)))]
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

/// The reference page's script (served here: the page loads nothing from elsewhere).
pub async fn docs_js() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        )],
        include_str!("docs.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
