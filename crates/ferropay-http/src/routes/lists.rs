//! The list endpoints' query parameters: strings as sent, each parsed into the library's filter
//! by the use case's own parser so that a bad one is a 400 naming it. The parameters' types and
//! bounds in the OpenAPI description come from the `#[param]` attributes here.

use ferropay::error::Result;
use ferropay::lists::{Page, PaymentFilter, PayoutFilter, RefundFilter, parse_time_ms};
use ferropay::payin::model::PaymentStatus;
use ferropay::psp::DisputeStatus;
use serde::Deserialize;
use utoipa::IntoParams;

/// `limit` and `starting_after`, shared by every list.
fn page(limit: &Option<String>, starting_after: &Option<String>) -> Result<Page> {
    Page::parse(limit.as_deref(), starting_after.as_deref())
}

fn time(field: &str, text: &Option<String>) -> Result<Option<i64>> {
    text.as_deref().map(|t| parse_time_ms(field, t)).transpose()
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PaymentListQuery {
    /// Items per page (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The id of the last item of the previous page: the page starts after it.
    starting_after: Option<String>,
    /// Only the payments of this checkout.
    checkout_id: Option<String>,
    /// Only payments with an order for this seller.
    seller_id: Option<String>,
    /// Only the payments of this buyer.
    buyer_id: Option<String>,
    /// Only payments in this status.
    #[param(value_type = Option<crate::openapi::schemas::PaymentStatus>)]
    status: Option<String>,
    /// Created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_gte: Option<String>,
    /// Created before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_lt: Option<String>,
}

impl PaymentListQuery {
    pub fn parse(&self) -> Result<(PaymentFilter, Page)> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                PaymentStatus::parse(s)
                    .ok_or_else(|| ferropay::Error::invalid("status", "is not a payment status"))
            })
            .transpose()?;
        Ok((
            PaymentFilter {
                checkout_id: self.checkout_id.clone(),
                seller_id: self.seller_id.clone(),
                buyer_id: self.buyer_id.clone(),
                status,
                created_gte_ms: time("created_gte", &self.created_gte)?,
                created_lt_ms: time("created_lt", &self.created_lt)?,
            },
            page(&self.limit, &self.starting_after)?,
        ))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RefundListQuery {
    /// Items per page (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The id of the last item of the previous page: the page starts after it.
    starting_after: Option<String>,
    /// Only the refunds of this payment.
    payment_id: Option<String>,
    /// Only the refunds of this seller's orders.
    seller_id: Option<String>,
    /// Only refunds in this status.
    #[param(value_type = Option<crate::openapi::schemas::RefundStatus>)]
    status: Option<String>,
    /// Created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_gte: Option<String>,
    /// Created before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_lt: Option<String>,
}

impl RefundListQuery {
    pub fn parse(&self) -> Result<(RefundFilter, Page)> {
        Ok((
            RefundFilter {
                payment_id: self.payment_id.clone(),
                seller_id: self.seller_id.clone(),
                status: one_of("status", &self.status, &["pending", "succeeded", "failed"])?,
                created_gte_ms: time("created_gte", &self.created_gte)?,
                created_lt_ms: time("created_lt", &self.created_lt)?,
            },
            page(&self.limit, &self.starting_after)?,
        ))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PayoutListQuery {
    /// Items per page (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The id of the last item of the previous page: the page starts after it.
    starting_after: Option<String>,
    /// Only the payouts of this seller.
    seller_id: Option<String>,
    /// Only payouts in this status.
    #[param(value_type = Option<crate::openapi::schemas::PayoutStatus>)]
    status: Option<String>,
    /// Created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_gte: Option<String>,
    /// Created before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_lt: Option<String>,
}

impl PayoutListQuery {
    pub fn parse(&self) -> Result<(PayoutFilter, Page)> {
        Ok((
            PayoutFilter {
                seller_id: self.seller_id.clone(),
                status: one_of(
                    "status",
                    &self.status,
                    &["pending", "in_transit", "paid", "failed"],
                )?,
                created_gte_ms: time("created_gte", &self.created_gte)?,
                created_lt_ms: time("created_lt", &self.created_lt)?,
            },
            page(&self.limit, &self.starting_after)?,
        ))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventListQuery {
    /// Items per page (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The id of the last event seen: the page starts after it (oldest first).
    starting_after: Option<String>,
    /// Only events of this type (`payment.succeeded`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Only events about this payment, refund, payout or endpoint.
    aggregate_id: Option<String>,
}

impl EventListQuery {
    pub fn parse(&self) -> Result<(ferropay::events::EventFilter, Page)> {
        Ok((
            ferropay::events::EventFilter {
                event_type: self.event_type.clone(),
                aggregate_id: self.aggregate_id.clone(),
            },
            page(&self.limit, &self.starting_after)?,
        ))
    }
}

fn one_of(field: &str, value: &Option<String>, allowed: &[&str]) -> Result<Option<String>> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ferropay::Error::invalid(
            field,
            format!("must be one of {}", allowed.join(", ")),
        )),
        other => Ok(other.clone()),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DisputeListQuery {
    /// Items per page (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The id of the last item of the previous page: the page starts after it.
    starting_after: Option<String>,
    /// Only disputes in this status.
    #[param(value_type = Option<crate::openapi::schemas::DisputeStatus>)]
    status: Option<String>,
}

impl DisputeListQuery {
    pub fn parse(&self) -> Result<(Option<DisputeStatus>, Page)> {
        let status = match &self.status {
            None => None,
            Some(text) => Some(DisputeStatus::parse(text).ok_or_else(|| {
                ferropay::Error::invalid(
                    "status",
                    "must be one of needs_response, under_review, won, lost",
                )
            })?),
        };
        Ok((status, page(&self.limit, &self.starting_after)?))
    }
}
