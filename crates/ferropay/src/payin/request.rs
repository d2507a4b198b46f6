//! A new payment as the checkout asks for it (`POST /v1/payments`), parsed into a value that is
//! valid by construction: every field checked, the first wrong one named in the error.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::money::{AmountMinor, Currency};

/// The most payment orders (sellers' shares) one checkout may have.
pub const MAX_ORDERS: usize = 100;
/// The longest id we accept from a client (checkout, order, seller, buyer).
pub const MAX_ID_CHARS: usize = 64;
const MAX_URL_CHARS: usize = 2048;
const MAX_EMAIL_CHARS: usize = 254;

/// The request body as it arrives.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentInput {
    pub checkout_id: String,
    pub buyer: BuyerInput,
    pub currency: String,
    pub orders: Vec<OrderInput>,
    #[serde(default)]
    pub return_url: Option<String>,
    /// The PSP to pay through; default: the routing rule's choice.
    #[serde(default)]
    pub psp: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuyerInput {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    pub order_id: String,
    pub seller_id: String,
    pub amount: i64,
}

/// A payment that may be created: ids well-formed, one currency, amounts positive and summed.
#[derive(Clone, Debug)]
pub struct NewPayment {
    pub checkout_id: String,
    pub buyer_id: String,
    pub buyer_email: Option<String>,
    pub currency: Currency,
    pub orders: Vec<NewOrder>,
    pub total: AmountMinor,
    pub return_url: Option<String>,
    /// The PSP the request names (checked against the configured ones when routing).
    pub psp: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewOrder {
    pub order_id: String,
    pub seller_id: String,
    pub amount: AmountMinor,
}

impl NewPayment {
    pub fn parse(input: CreatePaymentInput) -> Result<Self> {
        let checkout_id = parse_id("checkout_id", input.checkout_id)?;
        let buyer_id = parse_id("buyer.id", input.buyer.id)?;
        let buyer_email = input
            .buyer
            .email
            .map(|email| parse_email("buyer.email", email))
            .transpose()?;
        let currency = Currency::parse(&input.currency)
            .map_err(|e| Error::invalid("currency", e.to_string()))?;

        if input.orders.is_empty() {
            return Err(Error::invalid("orders", "at least one order is required"));
        }
        if input.orders.len() > MAX_ORDERS {
            return Err(Error::invalid(
                "orders",
                format!("at most {MAX_ORDERS} orders, got {}", input.orders.len()),
            ));
        }
        let mut seen = HashSet::new();
        let mut orders = Vec::with_capacity(input.orders.len());
        let mut total: Option<AmountMinor> = None;
        for (i, order) in input.orders.into_iter().enumerate() {
            let order_id = parse_id(&format!("orders[{i}].order_id"), order.order_id)?;
            if !seen.insert(order_id.clone()) {
                return Err(Error::invalid(
                    format!("orders[{i}].order_id"),
                    format!("`{order_id}` appears more than once"),
                ));
            }
            let seller_id = parse_id(&format!("orders[{i}].seller_id"), order.seller_id)?;
            let amount = AmountMinor::parse(order.amount)
                .map_err(|e| Error::invalid(format!("orders[{i}].amount"), e.to_string()))?;
            total = Some(match total {
                None => amount,
                Some(sum) => sum.checked_add(amount).map_err(|_| {
                    Error::invalid("orders", "the orders' amounts sum to more than the limit")
                })?,
            });
            orders.push(NewOrder {
                order_id,
                seller_id,
                amount,
            });
        }
        let total = total.expect("orders is not empty");
        let return_url = input
            .return_url
            .map(|url| parse_url("return_url", url))
            .transpose()?;
        Ok(Self {
            checkout_id,
            buyer_id,
            buyer_email,
            currency,
            orders,
            total,
            return_url,
            psp: input.psp.map(|psp| parse_id("psp", psp)).transpose()?,
        })
    }
}

/// Ids are 1–64 visible ASCII characters (no spaces): they end up in account names and URLs.
fn parse_id(field: &str, value: String) -> Result<String> {
    if value.is_empty() || value.chars().count() > MAX_ID_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {MAX_ID_CHARS} characters"),
        ));
    }
    if !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::invalid(
            field,
            "may hold only visible ASCII characters, without spaces",
        ));
    }
    Ok(value)
}

fn parse_email(field: &str, value: String) -> Result<String> {
    let well_formed = value.chars().count() <= MAX_EMAIL_CHARS
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && value
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if well_formed {
        Ok(value)
    } else {
        Err(Error::invalid(field, "is not an email address"))
    }
}

fn parse_url(field: &str, value: String) -> Result<String> {
    let well_formed = (value.starts_with("http://") || value.starts_with("https://"))
        && value.len() <= MAX_URL_CHARS
        && value.len() > "https://".len()
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(value)
    } else {
        Err(Error::invalid(
            field,
            format!("must be an absolute http(s) URL of at most {MAX_URL_CHARS} characters"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> CreatePaymentInput {
        serde_json::from_value(serde_json::json!({
            "checkout_id": "chk_1",
            "buyer": {"id": "buyer_7", "email": "b@example.com"},
            "currency": "USD",
            "orders": [
                {"order_id": "ord_1", "seller_id": "seller_a", "amount": 1500},
                {"order_id": "ord_2", "seller_id": "seller_b", "amount": 250}
            ]
        }))
        .unwrap()
    }

    fn field_of(result: Result<NewPayment>) -> String {
        match result {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn a_good_payment_parses_with_its_total() {
        let payment = NewPayment::parse(input()).unwrap();
        assert_eq!(payment.total.get(), 1750);
        assert_eq!(payment.orders.len(), 2);
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut bad = input();
        bad.currency = "XYZ".into();
        assert_eq!(field_of(NewPayment::parse(bad)), "currency");

        let mut bad = input();
        bad.orders[1].amount = 0;
        assert_eq!(field_of(NewPayment::parse(bad)), "orders[1].amount");

        let mut bad = input();
        bad.orders[0].amount = crate::money::MAX_AMOUNT_MINOR + 1;
        assert_eq!(field_of(NewPayment::parse(bad)), "orders[0].amount");

        let mut bad = input();
        bad.orders[1].order_id = "ord_1".into();
        assert_eq!(field_of(NewPayment::parse(bad)), "orders[1].order_id");

        let mut bad = input();
        bad.orders.clear();
        assert_eq!(field_of(NewPayment::parse(bad)), "orders");

        let mut bad = input();
        bad.orders = (0..=MAX_ORDERS)
            .map(|i| OrderInput {
                order_id: format!("o{i}"),
                seller_id: "s".into(),
                amount: 1,
            })
            .collect();
        assert_eq!(field_of(NewPayment::parse(bad)), "orders");

        let mut bad = input();
        bad.checkout_id = "has space".into();
        assert_eq!(field_of(NewPayment::parse(bad)), "checkout_id");

        let mut bad = input();
        bad.buyer.email = Some("nope".into());
        assert_eq!(field_of(NewPayment::parse(bad)), "buyer.email");

        let mut bad = input();
        bad.return_url = Some("javascript:alert(1)".into());
        assert_eq!(field_of(NewPayment::parse(bad)), "return_url");

        let mut bad = input();
        bad.orders[0].amount = crate::money::MAX_AMOUNT_MINOR;
        bad.orders[1].amount = 1;
        assert_eq!(field_of(NewPayment::parse(bad)), "orders");
    }
}
