//! Posting many journal transactions in one database transaction with multi-row statements
//! (DESIGN.md, "Scale": many postings cost one round trip and one commit). The same rules as
//! [`super::post`]: each transaction balanced (I3), the hash chain extended in order, wallets
//! moved with their seller accounts (I4), and a source reference posted at most once (I6).

use std::collections::{BTreeMap, HashSet};

use sqlx::Row;

use super::hash::{HashInput, transaction_hash};
use super::{NewJournalTransaction, accounts, check_balanced};
use crate::clock::now_ms;
use crate::error::Result;
use crate::ids::new_id;
use crate::store::{Store, Tx, sql};
use crate::wallet;

/// Rows per INSERT: journal rows have 9 parameters, postings 5, both far under the limits.
const ROWS_PER_INSERT: usize = 500;

/// Posts `batch` in order inside the caller's write transaction; transactions whose source
/// reference is posted already (or repeated in `batch`) are skipped. Answers how many were posted.
pub async fn post_batch(
    store: &Store,
    tx: &mut Tx,
    batch: &[NewJournalTransaction],
) -> Result<u64> {
    for new in batch {
        check_balanced(&new.postings)?;
    }
    let head = sqlx::query(store.pick(
        "SELECT seq, hash, transaction_id FROM ledger_head WHERE id = 1",
        "SELECT seq, hash, transaction_id FROM ledger_head WHERE id = 1 FOR UPDATE",
    ))
    .fetch_one(&mut **tx)
    .await?;
    let mut seq: i64 = head.try_get("seq")?;
    let mut prev_hash: String = head.try_get("hash")?;
    let mut prev_id: Option<String> = head.try_get("transaction_id")?;

    let mut taken: HashSet<String> = HashSet::new();
    for refs in batch.chunks(ROWS_PER_INSERT) {
        let statement = sql::in_list(
            store.backend(),
            "SELECT source_ref FROM journal_transactions WHERE source_ref IN ",
            1,
            refs.len(),
            "",
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        for new in refs {
            query = query.bind(new.source_ref.as_str());
        }
        for row in query.fetch_all(&mut **tx).await? {
            taken.insert(row.try_get("source_ref")?);
        }
    }

    let created_at_ms = now_ms();
    struct Planned {
        id: String,
        seq: i64,
        hash: String,
        prev_hash: String,
        prev_id: Option<String>,
    }
    let mut rows: Vec<(Planned, &NewJournalTransaction)> = Vec::with_capacity(batch.len());
    for new in batch {
        if !taken.insert(new.source_ref.clone()) {
            continue;
        }
        seq += 1;
        let id = new_id("jtx");
        let hash = transaction_hash(&HashInput {
            prev_hash: &prev_hash,
            transaction_id: &id,
            seq,
            source_ref: &new.source_ref,
            kind: new.kind,
            payment_id: new.payment_id.as_deref(),
            created_at_ms,
            postings: &new.postings,
        });
        let row = Planned {
            prev_id: prev_id.replace(id.clone()),
            id,
            seq,
            prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
            hash,
        };
        rows.push((row, new));
    }
    let Some((last, _)) = rows.last() else {
        return Ok(0);
    };
    let (last_seq, last_id) = (last.seq, last.id.clone());

    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO journal_transactions \
             (id, seq, source_ref, kind, payment_id, created_at_ms, prev_hash, hash, \
              prev_transaction_id) VALUES ",
        );
        sql::push_value_rows(&mut sql, store.backend(), chunk.len(), 9);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (row, new) in chunk {
            query = query
                .bind(row.id.as_str())
                .bind(row.seq)
                .bind(new.source_ref.as_str())
                .bind(new.kind)
                .bind(new.payment_id.as_deref())
                .bind(created_at_ms)
                .bind(row.prev_hash.as_str())
                .bind(row.hash.as_str())
                .bind(row.prev_id.as_deref());
        }
        query.execute(&mut **tx).await?;
    }

    let postings: Vec<(&str, i64, &super::Posting)> = rows
        .iter()
        .flat_map(|(row, new)| {
            new.postings
                .iter()
                .enumerate()
                .map(move |(line_no, posting)| (row.id.as_str(), line_no as i64, posting))
        })
        .collect();
    let mut wallets: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for chunk in postings.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO postings (transaction_id, line_no, account, currency, amount_minor) VALUES ",
        );
        sql::push_value_rows(&mut sql, store.backend(), chunk.len(), 5);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (transaction_id, line_no, posting) in chunk {
            query = query
                .bind(*transaction_id)
                .bind(*line_no)
                .bind(posting.account.as_str())
                .bind(posting.currency.as_str())
                .bind(posting.amount_minor);
            if let Some(seller_id) = accounts::seller_id(&posting.account) {
                let delta = wallets.entry((seller_id, &posting.currency)).or_insert(0);
                // The wallet holds what we owe the seller: a credit (negative) raises it.
                *delta = delta.checked_sub(posting.amount_minor).ok_or_else(|| {
                    crate::Error::Internal("a wallet's batch total overflows i64".into())
                })?;
            }
        }
        query.execute(&mut **tx).await?;
    }
    for ((seller_id, currency), delta_minor) in wallets {
        if delta_minor != 0 {
            wallet::add(tx, seller_id, currency, delta_minor, created_at_ms).await?;
        }
    }

    sqlx::query("UPDATE ledger_head SET seq = $1, hash = $2, transaction_id = $3 WHERE id = 1")
        .bind(last_seq)
        .bind(&prev_hash)
        .bind(&last_id)
        .execute(&mut **tx)
        .await?;
    Ok(rows.len() as u64)
}
