//! The console's sellers: the `seller_balances` view paged by seller and currency (a search
//! jumps to a seller id or its beginning), and one seller's page: the wallet (the same view,
//! as the API shows it), the seller's payouts, and the postings on the seller's ledger account,
//! newest first (keyset on the journal's sequence).

use sqlx::Row;

use crate::error::{Error, Result};
use crate::ledger::accounts;
use crate::lists::{Param, Select};
use crate::payout::PayoutView;
use crate::store::Store;
use crate::wallet::{self, WalletBalance};

use super::{PAGE_ROWS, Paged, by_key};

/// A row of `seller_balances`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SellerBalance {
    pub seller_id: String,
    pub currency: String,
    pub amount_minor: i64,
    pub available_minor: i64,
    pub payouts_in_flight_minor: i64,
}

/// Sellers' balances by seller id then currency, from `from` on, after `SELLER~CURRENCY`.
pub async fn list(
    store: &Store,
    from: Option<&str>,
    after: Option<&str>,
) -> Result<Paged<SellerBalance>> {
    by_key(
        store,
        "seller_id",
        "SELECT seller_id, currency, amount_minor, available_minor, payouts_in_flight_minor \
         FROM seller_balances",
        from,
        after,
    )
    .await?
    .read(|row| {
        Ok(SellerBalance {
            seller_id: row.try_get("seller_id")?,
            currency: row.try_get("currency")?,
            amount_minor: row.try_get("amount_minor")?,
            available_minor: row.try_get("available_minor")?,
            payouts_in_flight_minor: row.try_get("payouts_in_flight_minor")?,
        })
    })
}

/// A posting on a seller's account, with its transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountPosting {
    pub transaction_id: String,
    pub seq: i64,
    pub kind: String,
    pub payment_id: Option<String>,
    pub currency: String,
    pub amount_minor: i64,
    pub created_at_ms: i64,
}

/// What a seller's page shows.
#[derive(Clone, Debug)]
pub struct SellerDetail {
    pub seller_id: String,
    pub wallet: Vec<WalletBalance>,
    pub payouts: Vec<PayoutView>,
    pub postings: Paged<AccountPosting>,
}

/// A seller's page; postings newest first, before the journal sequence `before_seq`.
pub async fn detail(
    store: &Store,
    seller_id: &str,
    before_seq: Option<i64>,
) -> Result<SellerDetail> {
    let wallet = wallet::balances(store, seller_id).await?;
    let payouts = crate::lists::payouts(
        store,
        &crate::lists::PayoutFilter {
            seller_id: Some(seller_id.to_owned()),
            ..Default::default()
        },
        &crate::lists::Page {
            limit: crate::lists::MAX_LIMIT,
            starting_after: None,
        },
    )
    .await?
    .data;
    let mut select = Select::new(store.backend());
    select.condition(
        "p.account = ?",
        vec![Param::Text(accounts::seller(seller_id))],
    );
    if let Some(seq) = before_seq {
        select.condition("j.seq < ?", vec![Param::Int(seq)]);
    }
    let rows = select
        .fetch_ordered(
            store,
            "SELECT j.id, j.seq, j.kind, j.payment_id, j.created_at_ms, p.currency, \
             p.amount_minor FROM postings p JOIN journal_transactions j ON j.id = p.transaction_id",
            "",
            "j.seq DESC",
            PAGE_ROWS,
        )
        .await?;
    let rows = rows
        .iter()
        .map(|row| {
            Ok(AccountPosting {
                transaction_id: row.try_get("id")?,
                seq: row.try_get("seq")?,
                kind: row.try_get("kind")?,
                payment_id: row.try_get("payment_id")?,
                currency: row.try_get("currency")?,
                amount_minor: row.try_get("amount_minor")?,
                created_at_ms: row.try_get("created_at_ms")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if wallet.is_empty() && payouts.is_empty() && rows.is_empty() {
        // A seller whose payments were never captured has orders and nothing else yet.
        let has_orders =
            sqlx::query("SELECT 1 AS one FROM payment_orders WHERE seller_id = $1 LIMIT 1")
                .bind(seller_id)
                .fetch_optional(store.pool())
                .await?
                .is_some();
        if !has_orders {
            return Err(Error::NotFound(format!("seller `{seller_id}`")));
        }
    }
    Ok(SellerDetail {
        seller_id: seller_id.to_owned(),
        wallet,
        payouts,
        postings: Paged::of(rows, PAGE_ROWS, |row| row.seq.to_string()),
    })
}
