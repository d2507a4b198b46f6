//! `ledger verify`: the internal check that the books hold. Every journal transaction sums to
//! zero per currency (I3), each wallet equals minus the sum of its seller account (I4), and the
//! hash chain is intact from the first transaction to the head (tampering shows as a break),
//! each row of `account_balances` (kept by the money engine with the postings, read by the
//! `trial_balance` view) equals the sum and count of its account's postings, and each row of `settlement_days`
//! (likewise kept, read by the `daily_settlement` view) the sums of its day's postings on its
//! PSP's `psp_receivable` account.
//! The journal is streamed, so memory does not grow with the ledger.
//!
//! Keyed chains: each transaction is checked with the chain key it names (the verifier must
//! hold it), and an unkeyed transaction is a break when the verifier holds keys, unless it lies
//! at or before `unkeyed_through_seq` (a ledger written before keys existed). Checkpoints
//! (signed heads kept outside the database, [`super::checkpoint`]) must have valid signatures
//! and name a transaction the ledger still has at that sequence with that hash: with the chain
//! intact from there to the head, the ledger extends every checkpoint.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::Row;

use super::accounts;
use super::checkpoint::Checkpoint;
use super::hash::{HashInput, HashedPosting, transaction_hash};
use crate::chain_keys::ChainKeys;
use crate::error::Result;
use crate::store::{Backend, Store};
use sqlx::AnyConnection;

/// What `ferropay ledger verify` prints.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub transactions: i64,
    pub postings: i64,
    pub balanced: bool,
    pub wallets_match: bool,
    pub chain_intact: bool,
    /// Transactions hashed with a chain key (an HMAC), and without one (plain SHA-256).
    pub keyed_transactions: i64,
    pub unkeyed_transactions: i64,
    /// Signed checkpoints given to check, and whether the ledger extends every one of them.
    pub checkpoints_checked: i64,
    pub checkpoints_ok: bool,
    pub checkpoint_problems: Vec<String>,
    /// Every `account_balances` row equals its account's postings, and every account has one.
    pub balances_match: bool,
    /// Sum of all postings per currency: zero everywhere when balanced.
    pub totals_by_currency: BTreeMap<String, i64>,
    pub unbalanced_transactions: Vec<String>,
    pub wallet_mismatches: Vec<WalletMismatch>,
    pub chain_breaks: Vec<ChainBreak>,
    /// `account:currency` of the accounts whose kept balance differs from their postings.
    pub balance_mismatches: Vec<String>,
    /// Every `settlement_days` row equals its day's postings on `psp_receivable:{psp}`, and
    /// every such day has one.
    pub settlement_days_match: bool,
    /// `psp:currency:day_start_ms` of the days whose kept sums differ from their postings.
    pub settlement_day_mismatches: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.balanced
            && self.wallets_match
            && self.chain_intact
            && self.checkpoints_ok
            && self.balances_match
            && self.settlement_days_match
    }
}

#[derive(Debug, Serialize)]
pub struct WalletMismatch {
    pub seller_id: String,
    pub currency: String,
    pub wallet_minor: i64,
    pub ledger_minor: i64,
}

#[derive(Debug, Serialize)]
pub struct ChainBreak {
    pub transaction_id: String,
    pub seq: i64,
    pub problem: String,
}

/// At most this many problems of each kind are listed; the flags still tell the whole truth.
const MAX_LISTED: usize = 100;

/// What a verification checks beyond the books themselves.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Signed checkpoints the ledger must still extend.
    pub checkpoints: Vec<Checkpoint>,
    /// Unkeyed transactions up to this sequence are accepted although the verifier holds keys
    /// (a ledger that was written before it had keys); 0: none.
    pub unkeyed_through_seq: i64,
}

/// Verifies with the store's chain keys and no checkpoint.
pub async fn verify(store: &Store) -> Result<VerifyReport> {
    verify_with(store, &VerifyOptions::default()).await
}

pub async fn verify_with(store: &Store, options: &VerifyOptions) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        transactions: 0,
        postings: 0,
        balanced: true,
        wallets_match: true,
        chain_intact: true,
        keyed_transactions: 0,
        unkeyed_transactions: 0,
        checkpoints_checked: 0,
        checkpoints_ok: true,
        checkpoint_problems: Vec::new(),
        balances_match: true,
        totals_by_currency: BTreeMap::new(),
        unbalanced_transactions: Vec::new(),
        wallet_mismatches: Vec::new(),
        chain_breaks: Vec::new(),
        balance_mismatches: Vec::new(),
        settlement_days_match: true,
        settlement_day_mismatches: Vec::new(),
    };
    let mut seller_sums: BTreeMap<(String, String), i64> = BTreeMap::new();
    // One snapshot for the journal, the head and the wallets, so that a posting committed while
    // the check runs (a live database) is seen by all three or by none: no false alarm.
    let mut snapshot = store.pool().begin().await?;
    if store.backend() == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *snapshot)
            .await?;
    }
    let mut walk = Walk {
        keys: store.chain_keys(),
        unkeyed_through_seq: options.unkeyed_through_seq,
        checkpoints: BTreeMap::new(),
        expected_prev: GENESIS_HASH.to_owned(),
        expected_seq: 1,
    };
    for checkpoint in &options.checkpoints {
        report.checkpoints_checked += 1;
        let Some(keys) = walk.keys else {
            checkpoint_problem(
                &mut report,
                "checkpoints need the chain keys to check".into(),
            );
            continue;
        };
        if let Err(problem) = checkpoint.check_signature(keys) {
            checkpoint_problem(&mut report, problem);
        } else if checkpoint.seq == 0 {
            // The empty ledger's checkpoint: extended by any ledger.
        } else {
            walk.checkpoints.insert(checkpoint.seq, checkpoint);
        }
    }
    let last_hash = walk_journal(&mut snapshot, &mut report, &mut seller_sums, &mut walk).await?;
    let removed: Vec<String> = walk
        .checkpoints
        .values()
        .filter(|checkpoint| checkpoint.seq > report.transactions)
        .map(|checkpoint| {
            format!(
                "checkpoint at sequence {} ({}): the ledger has only {} transactions: \
                 transactions were removed",
                checkpoint.seq,
                checkpoint.transaction_id.as_deref().unwrap_or(""),
                report.transactions
            )
        })
        .collect();
    for problem in removed {
        checkpoint_problem(&mut report, problem);
    }
    check_head(&mut snapshot, &mut report, &last_hash).await?;
    check_wallets(&mut snapshot, &mut report, seller_sums).await?;
    check_account_balances(&mut snapshot, &mut report).await?;
    check_settlement_days(&mut snapshot, &mut report).await?;
    snapshot.rollback().await?;
    Ok(report)
}

/// One journal transaction as read back, with its postings in line order.
struct ReadTransaction {
    id: String,
    seq: i64,
    source_ref: String,
    kind: String,
    payment_id: Option<String>,
    created_at_ms: i64,
    prev_hash: String,
    hash: String,
    /// Recorded beside the chain (not hashed): names a predecessor that was deleted.
    prev_transaction_id: Option<String>,
    /// The chain key its hash claims to be made with; `None`: unkeyed.
    hash_key_id: Option<String>,
    postings: Vec<ReadPosting>,
}

/// What the walk along the journal carries from one transaction to the next.
struct Walk<'a> {
    keys: Option<&'a ChainKeys>,
    unkeyed_through_seq: i64,
    /// Checkpoints with valid signatures, by sequence.
    checkpoints: BTreeMap<i64, &'a Checkpoint>,
    expected_prev: String,
    expected_seq: i64,
}

fn checkpoint_problem(report: &mut VerifyReport, problem: String) {
    report.checkpoints_ok = false;
    if report.checkpoint_problems.len() < MAX_LISTED {
        report.checkpoint_problems.push(problem);
    }
}

/// A posting as stored, trusted in nothing: its currency may not even be valid any more.
struct ReadPosting {
    account: String,
    currency: String,
    amount_minor: i64,
}

impl HashedPosting for ReadPosting {
    fn account(&self) -> &str {
        &self.account
    }
    fn currency_code(&self) -> &str {
        &self.currency
    }
    fn amount_minor(&self) -> i64 {
        self.amount_minor
    }
}

async fn walk_journal(
    snapshot: &mut AnyConnection,
    report: &mut VerifyReport,
    seller_sums: &mut BTreeMap<(String, String), i64>,
    walk: &mut Walk<'_>,
) -> Result<String> {
    // A LEFT JOIN, so a transaction whose postings were all deleted still shows up (and fails).
    let mut rows = sqlx::query(
        "SELECT t.id, t.seq, t.source_ref, t.kind, t.payment_id, t.created_at_ms, t.prev_hash, \
                t.hash, t.prev_transaction_id, t.hash_key_id, p.line_no, p.account, p.currency, p.amount_minor \
         FROM journal_transactions t LEFT JOIN postings p ON p.transaction_id = t.id \
         ORDER BY t.seq, p.line_no",
    )
    .fetch(&mut *snapshot);

    let mut current: Option<ReadTransaction> = None;
    while let Some(row) = rows.try_next().await? {
        let id: String = row.try_get("id")?;
        if current.as_ref().is_none_or(|t| t.id != id) {
            if let Some(done) = current.take() {
                check_transaction(done, report, seller_sums, walk);
            }
            current = Some(ReadTransaction {
                id,
                seq: row.try_get("seq")?,
                source_ref: row.try_get("source_ref")?,
                kind: row.try_get("kind")?,
                payment_id: row.try_get("payment_id")?,
                created_at_ms: row.try_get("created_at_ms")?,
                prev_hash: row.try_get("prev_hash")?,
                hash: row.try_get("hash")?,
                prev_transaction_id: row.try_get("prev_transaction_id")?,
                hash_key_id: row.try_get("hash_key_id")?,
                postings: Vec::new(),
            });
        }
        let account: Option<String> = row.try_get("account")?;
        if let (Some(account), Some(transaction)) = (account, current.as_mut()) {
            transaction.postings.push(ReadPosting {
                account,
                currency: row.try_get("currency")?,
                amount_minor: row.try_get("amount_minor")?,
            });
        }
    }
    if let Some(done) = current.take() {
        check_transaction(done, report, seller_sums, walk);
    }
    // The hash of the last transaction read (the genesis hash for an empty journal).
    Ok(walk.expected_prev.clone())
}

pub(crate) const GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

fn check_transaction(
    transaction: ReadTransaction,
    report: &mut VerifyReport,
    seller_sums: &mut BTreeMap<(String, String), i64>,
    walk: &mut Walk<'_>,
) {
    let expected_prev = &mut walk.expected_prev;
    let expected_seq = &mut walk.expected_seq;
    report.transactions += 1;
    report.postings += transaction.postings.len() as i64;

    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for posting in &transaction.postings {
        let sum = sums.entry(&posting.currency).or_insert(0);
        *sum = sum.saturating_add(posting.amount_minor);
        let total = report
            .totals_by_currency
            .entry(posting.currency.clone())
            .or_insert(0);
        *total = total.saturating_add(posting.amount_minor);
        if let Some(seller_id) = accounts::seller_id(&posting.account) {
            let account_sum = seller_sums
                .entry((seller_id.to_owned(), posting.currency.clone()))
                .or_insert(0);
            *account_sum = account_sum.saturating_add(posting.amount_minor);
        }
    }
    if transaction.postings.len() < 2 || sums.values().any(|sum| *sum != 0) {
        report.balanced = false;
        if report.unbalanced_transactions.len() < MAX_LISTED {
            report.unbalanced_transactions.push(transaction.id.clone());
        }
    }

    let mut problems = Vec::new();
    let key = match transaction.hash_key_id.as_deref() {
        Some(key_id) => {
            report.keyed_transactions += 1;
            let key = walk.keys.and_then(|keys| keys.get(key_id));
            if key.is_none() {
                problems.push(format!(
                    "its hash is made with chain key {key_id}, which this verifier does not hold"
                ));
            }
            key
        }
        None => {
            report.unkeyed_transactions += 1;
            if walk.keys.is_some() && transaction.seq > walk.unkeyed_through_seq {
                problems.push(
                    "its hash is not keyed: written or rewritten without the chain key".to_owned(),
                );
            }
            None
        }
    };
    let recomputed = transaction_hash(&HashInput {
        prev_hash: &transaction.prev_hash,
        transaction_id: &transaction.id,
        seq: transaction.seq,
        source_ref: &transaction.source_ref,
        kind: &transaction.kind,
        payment_id: transaction.payment_id.as_deref(),
        created_at_ms: transaction.created_at_ms,
        postings: &transaction.postings,
        key,
    });
    let deleted_before = transaction.seq > *expected_seq;
    if deleted_before {
        // The chain says that something is gone; the successor's note says which one.
        report.chain_intact = false;
        if report.chain_breaks.len() < MAX_LISTED {
            report.chain_breaks.push(ChainBreak {
                transaction_id: transaction.prev_transaction_id.clone().unwrap_or_default(),
                seq: transaction.seq - 1,
                problem: format!(
                    "deleted: sequence {}..={} is missing before transaction {}",
                    expected_seq,
                    transaction.seq - 1,
                    transaction.id
                ),
            });
        }
    } else if transaction.seq != *expected_seq {
        problems.push(format!(
            "sequence {} where {} was expected: sequence numbers were changed",
            transaction.seq, expected_seq
        ));
    }
    if transaction.prev_hash != *expected_prev && !deleted_before {
        problems.push("its previous-hash does not match the transaction before it".to_owned());
    }
    if let Some(checkpoint) = walk.checkpoints.get(&transaction.seq)
        && checkpoint.hash != transaction.hash
    {
        report.checkpoints_ok = false;
        if report.checkpoint_problems.len() < MAX_LISTED {
            report.checkpoint_problems.push(format!(
                "checkpoint at sequence {}: the ledger's transaction {} there has another hash: \
                 the ledger up to it was rewritten",
                transaction.seq, transaction.id
            ));
        }
    }
    if (transaction.hash_key_id.is_none() || key.is_some()) && recomputed != transaction.hash {
        problems
            .push("its contents do not match its hash: a row was changed or deleted".to_owned());
    }
    if !problems.is_empty() {
        report.chain_intact = false;
        if report.chain_breaks.len() < MAX_LISTED {
            report.chain_breaks.push(ChainBreak {
                transaction_id: transaction.id.clone(),
                seq: transaction.seq,
                problem: problems.join("; "),
            });
        }
    }
    *expected_prev = transaction.hash;
    *expected_seq = transaction.seq + 1;
}

/// The head must point at the last transaction read: same sequence, same hash. Otherwise the
/// newest transactions were deleted (the head names the newest one's id) or the chain's end was
/// rewritten.
async fn check_head(
    snapshot: &mut AnyConnection,
    report: &mut VerifyReport,
    last_hash: &str,
) -> Result<()> {
    let head = sqlx::query("SELECT seq, hash, transaction_id FROM ledger_head WHERE id = 1")
        .fetch_one(&mut *snapshot)
        .await?;
    let head_seq: i64 = head.try_get("seq")?;
    let head_hash: String = head.try_get("hash")?;
    let head_transaction_id: Option<String> = head.try_get("transaction_id")?;
    let mut problems = Vec::new();
    if head_seq != report.transactions {
        problems.push(format!(
            "the chain head is at sequence {head_seq} but {} transactions were read: the \
             newest were deleted",
            report.transactions
        ));
    }
    if head_hash != last_hash {
        problems.push("the chain head's hash is not the last transaction's hash".to_owned());
    }
    if !problems.is_empty() {
        report.chain_intact = false;
        report.chain_breaks.push(ChainBreak {
            transaction_id: head_transaction_id.unwrap_or_default(),
            seq: head_seq,
            problem: problems.join("; "),
        });
    }
    if report.totals_by_currency.values().any(|total| *total != 0) {
        report.balanced = false;
    }
    Ok(())
}

/// Each kept account balance against its postings, in the database (one pass over postings).
async fn check_account_balances(
    snapshot: &mut AnyConnection,
    report: &mut VerifyReport,
) -> Result<()> {
    let rows = sqlx::query(
        "SELECT COALESCE(p.account, b.account) AS account, \
           COALESCE(p.currency, b.currency) AS currency FROM \
           (SELECT account, currency, CAST(SUM(amount_minor) AS BIGINT) AS total, \
              COUNT(*) AS n FROM postings GROUP BY account, currency) p \
         FULL OUTER JOIN account_balances b \
           ON b.account = p.account AND b.currency = p.currency \
         WHERE b.account IS NULL OR p.account IS NULL OR b.balance_minor <> p.total \
           OR b.postings <> p.n \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut *snapshot)
    .await?;
    for row in rows {
        report.balances_match = false;
        if report.balance_mismatches.len() < MAX_LISTED {
            let account: String = row.try_get("account")?;
            let currency: String = row.try_get("currency")?;
            report
                .balance_mismatches
                .push(format!("{account}:{currency}"));
        }
    }
    Ok(())
}

/// Each kept day of `settlement_days` against its postings, in the database (one pass over the
/// postings on `psp_receivable:*` and their journal transactions).
async fn check_settlement_days(
    snapshot: &mut AnyConnection,
    report: &mut VerifyReport,
) -> Result<()> {
    let rows = sqlx::query(
        "SELECT COALESCE(p.day_start_ms, s.day_start_ms) AS day_start_ms, \
           COALESCE(p.psp, s.psp) AS psp, COALESCE(p.currency, s.currency) AS currency FROM \
           (SELECT j.created_at_ms - j.created_at_ms % 86400000 AS day_start_ms, \
              SUBSTR(q.account, 16) AS psp, q.currency, \
              CAST(SUM(CASE WHEN j.kind <> 'bank_settlement' THEN q.amount_minor ELSE 0 END) \
                AS BIGINT) AS expected, \
              CAST(SUM(CASE WHEN j.kind = 'bank_settlement' THEN -q.amount_minor ELSE 0 END) \
                AS BIGINT) AS paid_out, \
              COUNT(*) AS n \
            FROM postings q JOIN journal_transactions j ON j.id = q.transaction_id \
            WHERE q.account LIKE 'psp_receivable:%' GROUP BY 1, 2, 3) p \
         FULL OUTER JOIN settlement_days s ON s.day_start_ms = p.day_start_ms \
           AND s.psp = p.psp AND s.currency = p.currency \
         WHERE s.psp IS NULL OR p.psp IS NULL OR s.expected_minor <> p.expected \
           OR s.paid_out_minor <> p.paid_out OR s.postings <> p.n \
         ORDER BY 1, 2, 3",
    )
    .fetch_all(&mut *snapshot)
    .await?;
    for row in rows {
        report.settlement_days_match = false;
        if report.settlement_day_mismatches.len() < MAX_LISTED {
            let day_start_ms: i64 = row.try_get("day_start_ms")?;
            let psp: String = row.try_get("psp")?;
            let currency: String = row.try_get("currency")?;
            report
                .settlement_day_mismatches
                .push(format!("{psp}:{currency}:{day_start_ms}"));
        }
    }
    Ok(())
}

async fn check_wallets(
    snapshot: &mut AnyConnection,
    report: &mut VerifyReport,
    mut seller_sums: BTreeMap<(String, String), i64>,
) -> Result<()> {
    let mut wallets =
        sqlx::query("SELECT seller_id, currency, balance_minor FROM wallets").fetch(&mut *snapshot);
    while let Some(row) = wallets.try_next().await? {
        let seller_id: String = row.try_get("seller_id")?;
        let currency: String = row.try_get("currency")?;
        let wallet_minor: i64 = row.try_get("balance_minor")?;
        let account_sum = seller_sums
            .remove(&(seller_id.clone(), currency.clone()))
            .unwrap_or(0);
        // Credits are negative: what we owe the seller is minus the account's sum.
        let ledger_minor = -account_sum;
        if wallet_minor != ledger_minor {
            push_mismatch(report, seller_id, currency, wallet_minor, ledger_minor);
        }
    }
    // Seller accounts with postings but no wallet row at all.
    for ((seller_id, currency), account_sum) in seller_sums {
        if account_sum != 0 {
            push_mismatch(report, seller_id, currency, 0, -account_sum);
        }
    }
    Ok(())
}

fn push_mismatch(
    report: &mut VerifyReport,
    seller_id: String,
    currency: String,
    wallet_minor: i64,
    ledger_minor: i64,
) {
    report.wallets_match = false;
    if report.wallet_mismatches.len() < MAX_LISTED {
        report.wallet_mismatches.push(WalletMismatch {
            seller_id,
            currency,
            wallet_minor,
            ledger_minor,
        });
    }
}
