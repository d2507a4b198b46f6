//! Sellers' wallets: what the platform owes each seller per currency. A wallet moves only with a
//! posting on the seller's ledger account, in the same transaction ([`crate::ledger::post`]
//! calls [`add`]); nothing else writes it.

use serde::Serialize;
use sqlx::Row;

use crate::error::Result;
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

/// One currency of a seller's wallet, as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct WalletBalance {
    pub currency: String,
    /// What the platform owes the seller.
    pub amount: i64,
    /// What of it can be paid out now: the balance less payouts in flight.
    pub available: i64,
}

/// A seller's balances, one per currency, sorted by currency. A seller with none has an empty list.
pub async fn balances(store: &Store, seller_id: &str) -> Result<Vec<WalletBalance>> {
    let rows = sqlx::query(
        "SELECT currency, balance_minor FROM wallets WHERE seller_id = $1 ORDER BY currency",
    )
    .bind(seller_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let amount: i64 = row.try_get("balance_minor")?;
            Ok(WalletBalance {
                currency: row.try_get("currency")?,
                amount,
                // No payouts exist yet, so nothing is in flight.
                available: amount,
            })
        })
        .collect()
}
