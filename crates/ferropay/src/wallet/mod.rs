//! Sellers' wallets, as they are read: what the platform owes each seller per currency. A
//! wallet's balance moves only with a posting on the seller's ledger account, in the same
//! transaction: the money engine writes both (`crate::engine`), and nothing else writes it.
//!
//! What a seller may take out now (`available`) is the balance less the seller's part of refunds
//! still pending at the PSP. Payouts leave the balance when they are sent, so `amount` (what the
//! platform owes) is the balance plus payouts still in flight.
//!
//! Lock order, everywhere money moves (the engine's batches): payments, refunds, payouts,
//! idempotency keys, wallets (each sorted), and the ledger head last.

use serde::Serialize;
use sqlx::Row;

use crate::error::Result;
use crate::store::Store;

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

/// A seller's balances, one per currency, sorted by currency. A seller with none has an empty
/// list. Read from the `seller_balances` view (migration 0015), which analysts and the operator
/// console read too, so all show the same figures.
pub async fn balances(store: &Store, seller_id: &str) -> Result<Vec<WalletBalance>> {
    let rows = sqlx::query(
        "SELECT currency, amount_minor, available_minor, payouts_in_flight_minor \
         FROM seller_balances WHERE seller_id = $1 ORDER BY currency",
    )
    .bind(seller_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(WalletBalance {
                currency: row.try_get("currency")?,
                amount: row.try_get("amount_minor")?,
                available: row.try_get("available_minor")?,
                payouts_in_flight: row.try_get("payouts_in_flight_minor")?,
            })
        })
        .collect()
}
