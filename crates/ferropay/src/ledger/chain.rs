//! The hash chain's head and how a run of new journal transactions extends it. The chain is
//! extended in memory for a whole batch (each transaction's hash covers its predecessor's), so
//! the head row is read once and written once per batch, whatever its size. The head carries
//! the store's current chain key (if it has keys), so each new hash is an HMAC under it and each
//! transaction records that key's id.

use sqlx::Row;

use super::NewJournalTransaction;
use super::hash::{HashInput, transaction_hash};
use crate::chain_keys::ChainKey;
use crate::error::Result;
use crate::store::{Store, Tx};

/// The end of the hash chain: the last transaction's sequence number, hash and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
    pub transaction_id: Option<String>,
    /// The key new transactions are hashed with; `None`: unkeyed SHA-256.
    pub key: Option<ChainKey>,
}

/// A journal transaction placed on the chain, ready to be written.
#[derive(Clone, Debug)]
pub struct Chained<'a> {
    pub id: &'a str,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub prev_id: Option<String>,
    pub created_at_ms: i64,
    /// The id of the chain key its hash was made with (`None`: unkeyed).
    pub key_id: Option<String>,
    pub new: &'a NewJournalTransaction,
}

/// Places `batch` (each transaction with the id it was given) on the chain after `head`, in
/// order, and moves `head` to the last of them.
pub fn extend<'a>(
    head: &mut ChainHead,
    batch: impl IntoIterator<Item = (&'a str, &'a NewJournalTransaction)>,
    created_at_ms: i64,
) -> Vec<Chained<'a>> {
    batch
        .into_iter()
        .map(|(id, new)| {
            let seq = head.seq + 1;
            let hash = transaction_hash(&HashInput {
                prev_hash: &head.hash,
                transaction_id: id,
                seq,
                source_ref: &new.source_ref,
                kind: new.kind,
                payment_id: new.payment_id.as_deref(),
                created_at_ms,
                postings: &new.postings,
                key: head.key.as_ref(),
            });
            let chained = Chained {
                key_id: head.key.as_ref().map(|key| key.id().to_owned()),
                prev_id: head.transaction_id.replace(id.to_owned()),
                prev_hash: std::mem::replace(&mut head.hash, hash.clone()),
                id,
                seq,
                hash,
                created_at_ms,
                new,
            };
            head.seq = seq;
            chained
        })
        .collect()
}

/// Locks the chain head for the rest of `tx` (PostgreSQL; SQLite's write transaction holds the
/// database's write lock already) and answers it.
pub async fn lock_head(store: &Store, tx: &mut Tx) -> Result<ChainHead> {
    let head = sqlx::query(store.pick(
        "SELECT seq, hash, transaction_id FROM ledger_head WHERE id = 1",
        "SELECT seq, hash, transaction_id FROM ledger_head WHERE id = 1 FOR UPDATE",
    ))
    .fetch_one(&mut **tx)
    .await?;
    Ok(ChainHead {
        seq: head.try_get("seq")?,
        hash: head.try_get("hash")?,
        transaction_id: head.try_get("transaction_id")?,
        key: store.chain_keys().map(|keys| keys.current().clone()),
    })
}

/// Moves the head row to `head` inside `tx`.
pub async fn write_head(tx: &mut Tx, head: &ChainHead) -> Result<()> {
    sqlx::query("UPDATE ledger_head SET seq = $1, hash = $2, transaction_id = $3 WHERE id = 1")
        .bind(head.seq)
        .bind(&head.hash)
        .bind(head.transaction_id.as_deref())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Posting;
    use crate::money::Currency;

    #[test]
    fn a_batch_extends_the_chain_in_order() {
        let usd = Currency::parse("USD").unwrap();
        let new = |n: u32| NewJournalTransaction {
            source_ref: format!("t:{n}"),
            kind: "test",
            payment_id: None,
            postings: vec![Posting::minor("a", 5, usd), Posting::minor("b", -5, usd)],
        };
        let batch = [new(1), new(2), new(3)];
        let ids = ["jtx_a", "jtx_b", "jtx_c"];
        let mut head = ChainHead {
            seq: 7,
            hash: "00".into(),
            transaction_id: Some("jtx_7".into()),
            key: None,
        };
        let chained = extend(&mut head, ids.iter().copied().zip(&batch), 1);
        assert_eq!(chained.len(), 3);
        assert_eq!(chained[0].seq, 8);
        assert_eq!(chained[0].prev_hash, "00");
        assert_eq!(chained[0].prev_id.as_deref(), Some("jtx_7"));
        for pair in chained.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1);
            assert_eq!(pair[1].prev_hash, pair[0].hash);
            assert_eq!(pair[1].prev_id.as_deref(), Some(pair[0].id));
        }
        assert_eq!(head.seq, 10);
        assert_eq!(head.hash, chained[2].hash);
        assert_eq!(head.transaction_id.as_deref(), Some("jtx_c"));
    }
}
