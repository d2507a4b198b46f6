//! The errors of ferropay's use cases, each of which an HTTP or CLI face maps to its own answer.
//! A variant says what went wrong in the caller's terms (which field, which conflict), never
//! carrying a secret.

/// Result of a ferropay use case.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: `field` names the wrong field (`orders[1].amount`), `message` says why.
    #[error("invalid `{field}`: {message}")]
    Invalid { field: String, message: String },
    /// The body is in a format the route does not read (`field` is `Content-Type`).
    #[error("invalid `{field}`: {message}")]
    UnsupportedMediaType { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the state of things; `code` is stable for clients.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The same `Idempotency-Key` was sent with another body.
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    #[error("missing or invalid API key")]
    Unauthorized,
    /// The key is valid but lacks the scope the route needs; `required` lists the scopes that
    /// would let it in, the one to make a key with first.
    #[error("this API key lacks the `{}` scope", required.join("` or `"))]
    InsufficientScope { required: Vec<&'static str> },
    /// A passing failure at the PSP (timeout, 5xx, connection): safe to retry with the same key.
    #[error("the payment service provider is unavailable: {message}")]
    PspUnavailable { message: String, retry_after_s: u64 },
    /// The PSP refused the request for good.
    #[error("the payment service provider rejected the request: {0}")]
    PspRejected(String),
    /// ferropay cannot take the request now (its money engine's queue is full, the database
    /// is out of reach): nothing was done, and the same request may be sent again later.
    #[error("the service is busy: {message}")]
    Unavailable { message: String, retry_after_s: u64 },
    /// The API key made more requests than its rate allows; the next is allowed after
    /// `retry_after_s`.
    #[error("this API key is over its rate limit; retry after {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
}

/// Seconds a client is told to wait when the database is out of reach.
pub const DATABASE_RETRY_AFTER_S: u64 = 2;

/// Whether a database error says the database is out of reach (no connection free within the
/// pool's acquire timeout, the connection lost or refused, the server shutting down or starting
/// up) rather than that the statement was wrong: a passing failure, answered 503. Nothing was
/// committed by a statement that failed so.
pub fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL's SQLSTATE classes 08 (connection exception) and 57P (operator
        // intervention: admin or crash shutdown, cannot connect now).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

impl Error {
    /// Seconds after which a retry may succeed, for errors that are passing (`Retry-After`).
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            Self::PspUnavailable { retry_after_s, .. }
            | Self::Unavailable { retry_after_s, .. }
            | Self::RateLimited { retry_after_s } => Some(*retry_after_s),
            Self::Database(error) if database_unreachable(error) => Some(DATABASE_RETRY_AFTER_S),
            _ => None,
        }
    }

    /// The HTTP status the contract gives this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::Unauthorized => 401,
            Self::InsufficientScope { .. } => 403,
            Self::NotFound(_) => 404,
            Self::UnsupportedMediaType { .. } => 415,
            Self::Conflict { .. } => 409,
            Self::IdempotencyKeyReused => 422,
            Self::RateLimited { .. } => 429,
            Self::PspRejected(_) => 502,
            Self::PspUnavailable { .. } | Self::Unavailable { .. } => 503,
            Self::Database(error) if database_unreachable(error) => 503,
            Self::Database(_) | Self::Internal(_) => 500,
        }
    }

    /// `(type, code)` of the contract's error body; `code` is stable for clients.
    pub fn type_and_code(&self) -> (&'static str, &'static str) {
        match self {
            Self::Invalid { .. } => ("invalid_request", "invalid_field"),
            Self::Unauthorized => ("authentication_error", "invalid_api_key"),
            Self::InsufficientScope { .. } => ("permission_error", "insufficient_scope"),
            Self::NotFound(_) => ("invalid_request", "not_found"),
            Self::UnsupportedMediaType { .. } => ("invalid_request", "unsupported_media_type"),
            Self::Conflict { code, .. } => ("conflict", code),
            Self::IdempotencyKeyReused => ("idempotency_error", "idempotency_key_reused"),
            Self::PspRejected(_) => ("psp_error", "psp_rejected"),
            Self::PspUnavailable { .. } => ("psp_error", "psp_unavailable"),
            Self::Unavailable { .. } => ("api_error", "service_unavailable"),
            Self::Database(error) if database_unreachable(error) => {
                ("api_error", "service_unavailable")
            }
            Self::RateLimited { .. } => ("rate_limit_error", "rate_limited"),
            Self::Database(_) | Self::Internal(_) => ("api_error", "internal_error"),
        }
    }

    /// The contract's error body: `{"error": {"type", "code", "message", "field"?,
    /// "required_scope"?}}`. Internal
    /// details stay in the logs.
    pub fn to_body(&self) -> serde_json::Value {
        let (kind, code) = self.type_and_code();
        let message = match self {
            Self::Database(error) if database_unreachable(error) => {
                "the database is out of reach; try again shortly".to_owned()
            }
            Self::Database(_) | Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let mut error = serde_json::json!({"type": kind, "code": code, "message": message});
        if let Self::Invalid { field, .. } | Self::UnsupportedMediaType { field, .. } = self {
            error["field"] = serde_json::Value::String(field.clone());
        }
        if let Self::InsufficientScope { required } = self {
            error["required_scope"] = serde_json::json!(required.first().copied().unwrap_or(""));
        }
        serde_json::json!({ "error": error })
    }
}
