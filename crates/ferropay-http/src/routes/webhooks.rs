//! `POST /webhooks/psp/{psp}`: a PSP's signed webhook (`sandbox`, `stripe`, `adyen`). The raw
//! body goes straight to the use case, which checks that PSP's signature on those exact bytes
//! before parsing anything. Answered as the PSP requires (Adyen: `[accepted]`).
//! 400 for a bad signature, stale timestamp or malformed body (nothing changes); 200 for a
//! duplicate; 500 when our database fails, so that the PSP retries.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ferropay::Ferropay;
use ferropay::psp::WebhookAck;
use ferropay::service::WebhookRejection;
use serde_json::json;

use crate::error::{ApiError, payload_too_large};
use crate::extract::PathId;
use crate::openapi::schemas;

/// The PSP's signed webhook (no API key: the signature authenticates it).
#[utoipa::path(post, path = "/webhooks/psp/{psp}", tag = "psp",
    params(
        ("psp" = String, Path, description = "The PSP's name (`sandbox`, `stripe`, `adyen`)"),
        ("Sandbox-Signature" = Option<String>, Header, description = "The sandbox's: `t=<unix s>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`"),
        ("Stripe-Signature" = Option<String>, Header, description = "Stripe's, in the same scheme with the endpoint's `whsec_` secret; Adyen signs each item in the body (`additionalData.hmacSignature`)"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The PSP's event, verified on its raw bytes"),
    responses(
        (status = 200, description = "Applied, unchanged or a duplicate (Adyen: the text `[accepted]`)", body = schemas::WebhookReceived),
        (status = 400, description = "Bad signature, stale timestamp or malformed body: nothing changed", body = schemas::ErrorBody),
        (status = 404, description = "No PSP of that name", body = schemas::ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
        (status = 500, description = "The database failed: the PSP retries", body = schemas::ErrorBody),
    ))]
pub async fn receive(
    State(service): State<Ferropay>,
    PathId(psp): PathId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return payload_too_large();
        }
        Err(rejection) => return ApiError::invalid("body", rejection.body_text()).into_response(),
    };
    // Each PSP signs in its own header (Stripe-Signature, Sandbox-Signature) or in the body
    // (Adyen's hmacSignature).
    let signature = service
        .webhook_connector(&psp)
        .ok()
        .and_then(|connector| connector.signature_header())
        .and_then(|name| headers.get(name))
        .and_then(|value| value.to_str().ok());
    match service.handle_webhook(&psp, signature, &body).await {
        Ok((results, WebhookAck::Json)) => {
            let outcome = match results.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
            (
                StatusCode::OK,
                axum::Json(json!({"received": true, "outcome": outcome})),
            )
                .into_response()
        }
        Ok((_, WebhookAck::Text(text))) => (StatusCode::OK, text).into_response(),
        Err(WebhookRejection::UnknownPsp(name)) => {
            ApiError(ferropay::Error::NotFound(format!("PSP `{name}`"))).into_response()
        }
        Err(WebhookRejection::Verify(error)) => {
            tracing::warn!(%psp, %error, "webhook refused");
            ApiError::invalid("body", error.to_string()).into_response()
        }
        Err(WebhookRejection::Apply(error)) => ApiError(error).into_response(),
    }
}
