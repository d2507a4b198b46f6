//! Sellers' wallets: what the platform owes each seller per currency. A wallet's balance moves
//! only with a posting on the seller's ledger account, in the same transaction
//! ([`crate::ledger::post`] calls [`add`]); nothing else writes it.
//!
//! What a seller may take out now (`available`) is the balance less the seller's part of refunds
//! still pending at the PSP. Payouts leave the balance when they are sent, so `amount` (what the
//! platform owes) is the balance plus payouts still in flight.
//!
//! Lock order, everywhere money moves: the payment row, then the ledger head, then wallet rows.

use serde::Serialize;
use sqlx::Row;

use crate::error::Result;
use crate::ledger;
use crate::store::{Store, Tx};

/// Adds `delta_minor` (negative to lower) to a seller's wallet, creating it at zero first.
pub(crate) async fn add(
    tx: &mut Tx,
    seller_id: &str,
    currency: &str,
    delta_minor: i64,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO wallets (seller_id, currency, balance_minor, updated_at_ms) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (seller_id, currency) DO UPDATE \
         SET balance_minor = wallets.balance_minor + excluded.balance_minor, \
             updated_at_ms = excluded.updated_at_ms",
    )
    .bind(seller_id)
    .bind(currency)
    .bind(delta_minor)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Locks the ledger head and the seller's wallet for the rest of `tx`, and answers what the
/// seller may take out now. Holding these locks, no posting and no other payout or refund can
/// change that figure until `tx` ends, so a check against it cannot be raced.
pub(crate) async fn lock_available(
    store: &Store,
    tx: &mut Tx,
    seller_id: &str,
    currency: &str,
) -> Result<i64> {
    ledger::lock_head(store, tx).await?;
    let balance_minor: i64 = sqlx::query(store.pick(
        "SELECT balance_minor FROM wallets WHERE seller_id = $1 AND currency = $2",
        "SELECT balance_minor FROM wallets WHERE seller_id = $1 AND currency = $2 FOR UPDATE",
    ))
    .bind(seller_id)
    .bind(currency)
    .fetch_optional(&mut **tx)
    .await?
    .map(|row| row.try_get("balance_minor"))
    .transpose()?
    .unwrap_or(0);
    let held_minor: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount_minor - platform_fee_minor), 0) AS BIGINT) AS held \
         FROM refunds WHERE seller_id = $1 AND currency = $2 AND status = 'pending'",
    )
    .bind(seller_id)
    .bind(currency)
    .fetch_one(&mut **tx)
    .await?
    .try_get("held")?;
    Ok(balance_minor - held_minor)
}

/// One currency of a seller's wallet, as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct WalletBalance {
    pub currency: String,
    /// What the platform owes the seller: the balance plus payouts not yet paid.
    pub amount: i64,
    /// What can be paid out now: the balance less refunds pending at the PSP.
    pub available: i64,
    /// Payouts sent but not yet paid.
    pub payouts_in_flight: i64,
}

/// A seller's balances, one per currency, sorted by currency. A seller with none has an empty list.
pub async fn balances(store: &Store, seller_id: &str) -> Result<Vec<WalletBalance>> {
    let rows = sqlx::query(
        "SELECT w.currency, w.balance_minor, \
           CAST(COALESCE((SELECT SUM(p.amount_minor) FROM payouts p \
             WHERE p.seller_id = w.seller_id AND p.currency = w.currency \
             AND p.status IN ('pending', 'in_transit')), 0) AS BIGINT) AS in_flight_minor, \
           CAST(COALESCE((SELECT SUM(r.amount_minor - r.platform_fee_minor) FROM refunds r \
             WHERE r.seller_id = w.seller_id AND r.currency = w.currency \
             AND r.status = 'pending'), 0) AS BIGINT) AS held_minor \
         FROM wallets w WHERE w.seller_id = $1 ORDER BY w.currency",
    )
    .bind(seller_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let balance_minor: i64 = row.try_get("balance_minor")?;
            let in_flight_minor: i64 = row.try_get("in_flight_minor")?;
            let held_minor: i64 = row.try_get("held_minor")?;
            Ok(WalletBalance {
                currency: row.try_get("currency")?,
                amount: balance_minor + in_flight_minor,
                available: balance_minor - held_minor,
                payouts_in_flight: in_flight_minor,
            })
        })
        .collect()
}
