//! Sellers' accounts at the PSPs: where a seller's payouts go at a PSP that pays sellers out
//! (Stripe Connect's `acct_…`, an Adyen balance account `BA…`). Registered through `PUT /v1/sellers/{seller_id}/psp_accounts/{psp}`;
//! read when a payout is sent.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clock::{now_ms, rfc3339_from_ms};
use crate::error::{Error, Result};
use crate::store::Store;

/// The longest account id accepted.
const ACCOUNT_ID_MAX_CHARS: usize = 255;

/// `PUT /v1/sellers/{seller_id}/psp_accounts/{psp}`'s body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PspAccountInput {
    pub account_id: String,
}

/// A seller's account at one PSP, as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PspAccountView {
    pub seller_id: String,
    pub psp: String,
    pub account_id: String,
    pub updated_at: String,
}

/// The seller's account id at `psp`, if one is registered.
pub async fn psp_account(store: &Store, seller_id: &str, psp: &str) -> Result<Option<String>> {
    let row =
        sqlx::query("SELECT account_id FROM seller_psp_accounts WHERE seller_id = $1 AND psp = $2")
            .bind(seller_id)
            .bind(psp)
            .fetch_optional(store.pool())
            .await?;
    Ok(row.map(|row| row.try_get("account_id")).transpose()?)
}

/// Registers (or replaces) the seller's account at `psp`. Stripe's must look like one
/// (`acct_…`), Adyen's too (`BA…`); any account id is 1–255 visible ASCII characters.
pub async fn set_psp_account(
    store: &Store,
    seller_id: &str,
    psp: &str,
    account_id: &str,
) -> Result<PspAccountView> {
    if account_id.is_empty()
        || account_id.chars().count() > ACCOUNT_ID_MAX_CHARS
        || !account_id.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(Error::invalid(
            "account_id",
            format!("must be 1 to {ACCOUNT_ID_MAX_CHARS} visible ASCII characters"),
        ));
    }
    if psp == crate::psp::stripe::NAME && !account_id.starts_with("acct_") {
        return Err(Error::invalid(
            "account_id",
            "a Stripe connected account id starts with `acct_`",
        ));
    }
    if psp == crate::psp::adyen::NAME && !account_id.starts_with("BA") {
        return Err(Error::invalid(
            "account_id",
            "an Adyen balance account id starts with `BA`",
        ));
    }
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO seller_psp_accounts (seller_id, psp, account_id, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (seller_id, psp) \
         DO UPDATE SET account_id = excluded.account_id, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(seller_id)
    .bind(psp)
    .bind(account_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(PspAccountView {
        seller_id: seller_id.to_owned(),
        psp: psp.to_owned(),
        account_id: account_id.to_owned(),
        updated_at: rfc3339_from_ms(now),
    })
}
