//! Webhook endpoints: where a merchant wants events pushed, which event types, and the secrets
//! deliveries are signed with. The secret is shown once, when the endpoint is made or its secret
//! rolled; a roll keeps the old secret valid for [`ROLL_OVERLAP_MS`] beside the new one, so the
//! receiver can switch without missing a delivery.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::WebhookConfig;
use super::guard::{is_public, literal_ip};
use crate::clock::{now_ms, rfc3339_from_ms};
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::store::Store;

/// How long a rolled secret stays valid beside the new one: 24 hours.
pub const ROLL_OVERLAP_MS: i64 = 24 * 3_600_000;

/// Most event types an endpoint names, and endpoints that may exist at once.
const MAX_EVENT_TYPES: usize = 50;
const MAX_ENDPOINTS: i64 = 100;
const MAX_URL_CHARS: usize = 2_048;

/// `POST /v1/webhook_endpoints`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    pub url: String,
    /// `["payment.succeeded", …]`, or `["*"]` for every event.
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// An endpoint as the API shows it; `secret` only in the answer that made or rolled it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why it was disabled (`failing for 3 days`), while it is.
    pub disabled_reason: Option<String>,
    /// When the old secret of a roll stops being valid, while it is.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// An endpoint with its secrets, for signing.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub id: String,
    pub url: String,
    pub enabled: bool,
    pub deleted: bool,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at_ms: Option<i64>,
    pub failing_since_ms: Option<i64>,
}

impl Endpoint {
    /// The secrets to sign with at `now_ms`: the current one, and the rolled one while valid.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) =
            (&self.previous_secret, self.previous_secret_expires_at_ms)
            && now_ms < until
        {
            secrets.push(previous);
        }
        secrets
    }
}

fn new_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 24]>()))
}

/// Checks a webhook URL: absolute `http`/`https` with a host, no credentials, and unless private
/// destinations are allowed, not a literal private address (names are checked at delivery).
pub fn check_url(url: &str, config: &WebhookConfig) -> Result<()> {
    let invalid = |message: &str| Error::invalid("url", message);
    if url.len() > MAX_URL_CHARS {
        return Err(invalid("is longer than 2048 characters"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("must be http:// or https://"));
    }
    let host = parsed.host_str().ok_or_else(|| invalid("has no host"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("must not carry credentials"));
    }
    if !config.allow_private_urls
        && let Some(ip) = literal_ip(host)
        && !is_public(ip)
    {
        return Err(invalid(
            "is a private, loopback or link-local address (see --allow-private-webhook-urls)",
        ));
    }
    Ok(())
}

fn check_event_types(types: &[String]) -> Result<()> {
    if types.is_empty() || types.len() > MAX_EVENT_TYPES {
        return Err(Error::invalid(
            "event_types",
            "must name 1 to 50 event types, or \"*\"",
        ));
    }
    for (i, name) in types.iter().enumerate() {
        let ok = name == "*"
            || (name.len() <= 64
                && name.contains('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'));
        if !ok {
            return Err(Error::invalid(
                format!("event_types[{i}]"),
                "must be an event type such as payment.succeeded, or \"*\"",
            ));
        }
    }
    Ok(())
}

/// Whether an endpoint that wants `event_types` (as stored) gets an event of `event_type`.
pub(crate) fn subscribed(event_types: &str, event_type: &str) -> bool {
    event_types
        .split_whitespace()
        .any(|t| t == "*" || t == event_type)
}

const SELECT_ENDPOINT: &str = "SELECT id, url, event_types, description, enabled, secret, \
     previous_secret, previous_secret_expires_at_ms, failing_since_ms, disabled_reason, \
     deleted_at_ms, created_at_ms FROM webhook_endpoints";

fn view_of(row: &AnyRow, now_ms: i64) -> Result<EndpointView> {
    let expires: Option<i64> = row.try_get("previous_secret_expires_at_ms")?;
    let event_types: String = row.try_get("event_types")?;
    Ok(EndpointView {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        event_types: event_types.split_whitespace().map(str::to_owned).collect(),
        description: row.try_get("description")?,
        enabled: row.try_get::<i64, _>("enabled")? == 1,
        disabled_reason: row.try_get("disabled_reason")?,
        previous_secret_expires_at: expires.filter(|at| *at > now_ms).map(rfc3339_from_ms),
        created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
        secret: None,
    })
}

pub(crate) fn endpoint_of(row: &AnyRow) -> Result<Endpoint> {
    Ok(Endpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        enabled: row.try_get::<i64, _>("enabled")? == 1,
        deleted: row.try_get::<Option<i64>, _>("deleted_at_ms")?.is_some(),
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_secret_expires_at_ms: row.try_get("previous_secret_expires_at_ms")?,
        failing_since_ms: row.try_get("failing_since_ms")?,
    })
}

/// Registers an endpoint; the answer carries its secret, shown this once.
pub async fn create(
    store: &Store,
    config: &WebhookConfig,
    input: &EndpointInput,
) -> Result<EndpointView> {
    check_url(&input.url, config)?;
    check_event_types(&input.event_types)?;
    if input.description.as_ref().is_some_and(|d| d.len() > 500) {
        return Err(Error::invalid(
            "description",
            "is longer than 500 characters",
        ));
    }
    let live: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM webhook_endpoints WHERE deleted_at_ms IS NULL")
            .fetch_one(store.pool())
            .await?
            .try_get("n")?;
    if live >= MAX_ENDPOINTS {
        return Err(Error::conflict(
            "too_many_endpoints",
            "at most 100 webhook endpoints may exist; delete one first",
        ));
    }
    let id = new_id("we");
    let secret = new_secret();
    let now = now_ms();
    let mut types = input.event_types.clone();
    types.sort();
    types.dedup();
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, event_types, description, enabled, secret, \
         created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&id)
    .bind(&input.url)
    .bind(types.join(" "))
    .bind(&input.description)
    .bind(i64::from(input.enabled.unwrap_or(true)))
    .bind(&secret)
    .bind(now)
    .execute(store.pool())
    .await?;
    let mut view = get(store, &id).await?;
    view.secret = Some(secret);
    Ok(view)
}

/// Live endpoints, oldest first.
pub async fn list(store: &Store) -> Result<Vec<EndpointView>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT_ENDPOINT} WHERE deleted_at_ms IS NULL ORDER BY created_at_ms, id"
    )))
    .fetch_all(store.pool())
    .await?;
    let now = now_ms();
    rows.iter().map(|row| view_of(row, now)).collect()
}

pub async fn get(store: &Store, endpoint_id: &str) -> Result<EndpointView> {
    let row = load_row(store, endpoint_id).await?;
    view_of(&row, now_ms())
}

async fn load_row(store: &Store, endpoint_id: &str) -> Result<AnyRow> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT_ENDPOINT} WHERE id = $1 AND deleted_at_ms IS NULL"
    )))
    .bind(endpoint_id)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| Error::NotFound(format!("webhook endpoint `{endpoint_id}`")))
}

/// `POST /v1/webhook_endpoints/{id}` body: what to change.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointUpdate {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    /// Enabling an endpoint clears why it was disabled and its failure streak.
    #[serde(default)]
    pub enabled: Option<bool>,
}

pub async fn update(
    store: &Store,
    config: &WebhookConfig,
    endpoint_id: &str,
    update: &EndpointUpdate,
) -> Result<EndpointView> {
    let row = load_row(store, endpoint_id).await?;
    let current = view_of(&row, now_ms())?;
    if let Some(url) = &update.url {
        check_url(url, config)?;
    }
    if let Some(types) = &update.event_types {
        check_event_types(types)?;
    }
    let mut types = update
        .event_types
        .clone()
        .unwrap_or(current.event_types.clone());
    types.sort();
    types.dedup();
    let enabled = update.enabled.unwrap_or(current.enabled);
    sqlx::query(
        "UPDATE webhook_endpoints SET url = $1, event_types = $2, description = $3, \
         enabled = $4, \
         disabled_reason = CASE WHEN $4 = 1 THEN NULL ELSE disabled_reason END, \
         failing_since_ms = CASE WHEN $4 = 1 THEN NULL ELSE failing_since_ms END, \
         updated_at_ms = $5 WHERE id = $6",
    )
    .bind(update.url.as_ref().unwrap_or(&current.url))
    .bind(types.join(" "))
    .bind(update.description.as_ref().or(current.description.as_ref()))
    .bind(i64::from(enabled))
    .bind(now_ms())
    .bind(endpoint_id)
    .execute(store.pool())
    .await?;
    get(store, endpoint_id).await
}

/// Deletes an endpoint: no delivery goes to it any more. Its delivery log stays.
pub async fn delete(store: &Store, endpoint_id: &str) -> Result<()> {
    let now = now_ms();
    let deleted = sqlx::query(
        "UPDATE webhook_endpoints SET deleted_at_ms = $1, enabled = 0, updated_at_ms = $1 \
         WHERE id = $2 AND deleted_at_ms IS NULL",
    )
    .bind(now)
    .bind(endpoint_id)
    .execute(store.pool())
    .await?
    .rows_affected();
    if deleted == 0 {
        return Err(Error::NotFound(format!("webhook endpoint `{endpoint_id}`")));
    }
    Ok(())
}

/// Makes a new secret; the current one stays valid for [`ROLL_OVERLAP_MS`] beside it (a
/// secret rolled earlier and still valid is replaced: two at most). Answers the new secret once.
pub async fn roll_secret(store: &Store, endpoint_id: &str) -> Result<EndpointView> {
    load_row(store, endpoint_id).await?;
    let secret = new_secret();
    let now = now_ms();
    sqlx::query(
        "UPDATE webhook_endpoints SET previous_secret = secret, \
         previous_secret_expires_at_ms = $1, secret = $2, updated_at_ms = $3 \
         WHERE id = $4 AND deleted_at_ms IS NULL",
    )
    .bind(now + ROLL_OVERLAP_MS)
    .bind(&secret)
    .bind(now)
    .bind(endpoint_id)
    .execute(store.pool())
    .await?;
    let mut view = get(store, endpoint_id).await?;
    view.secret = Some(secret);
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_and_public_unless_allowed() {
        let strict = WebhookConfig::default();
        let open = WebhookConfig {
            allow_private_urls: true,
            ..WebhookConfig::default()
        };
        assert!(check_url("https://hooks.example.com/ferropay", &strict).is_ok());
        for bad in [
            "ftp://example.com/",
            "not a url",
            "http://user:pw@example.com/",
            "http://127.0.0.1:9000/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.5/",
        ] {
            assert!(check_url(bad, &strict).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:9000/", &open).is_ok());
    }

    #[test]
    fn event_types_are_named_or_star() {
        assert!(check_event_types(&["*".into()]).is_ok());
        assert!(check_event_types(&["payment.succeeded".into()]).is_ok());
        assert!(check_event_types(&[]).is_err());
        assert!(check_event_types(&["Payment".into()]).is_err());
        assert!(subscribed("*", "refund.failed"));
        assert!(subscribed("payment.failed refund.failed", "refund.failed"));
        assert!(!subscribed("payment.failed", "refund.failed"));
    }
}
