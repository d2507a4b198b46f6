//! Data for `ferropay bench reconcile`: captured payments seeded in bulk (payments and their
//! orders with multi-row statements, their capture postings through the money engine, so the
//! books still verify), and the settlement file that matches them, written line by line. Payment `i` of a
//! seed is fully determined by the seed's tag and `i`, so neither side holds a list in memory.

use std::io::{BufWriter, Write};
use std::path::Path;

use sqlx::Row;

use super::line::COLUMNS;
use crate::clock::{now_ms, rfc3339_from_ms};
use crate::engine::{Engine, Post};
use crate::error::Result;
use crate::ledger::{NewJournalTransaction, Posting, accounts};
use crate::money::Currency;
use crate::store::{Backend, Store, sql};

/// Payments per write transaction while seeding.
const SEED_CHUNK: u64 = 2_000;
/// Rows per INSERT statement (15 parameters each for payments).
const ROWS_PER_INSERT: usize = 500;
/// Sellers the seeded payments are spread over.
const SELLERS: u64 = 100;

/// One seeded payment.
pub struct BenchPayment {
    pub id: String,
    pub psp_reference: String,
    pub amount_minor: i64,
    pub seller_id: String,
}

/// Payment `i` of the seed tagged `tag`: USD, 10.00 to 99.99, one order.
pub fn bench_payment(tag: &str, i: u64) -> BenchPayment {
    BenchPayment {
        id: format!("pay_bench_{tag}_{i:09}"),
        psp_reference: format!("psp_bench_{tag}_{i:09}"),
        amount_minor: 1_000 + (i * 7_919 % 9_000) as i64,
        seller_id: format!("seller_bench_{}", i % SELLERS),
    }
}

/// The sandbox's fee: 2.9 % rounded half up, plus 30 minor units.
fn fee_minor(gross_minor: i64) -> i64 {
    (gross_minor * 290 + 5_000) / 10_000 + 30
}

/// Seeds payments `0..count` as succeeded and captured. `progress` gets the count done.
pub async fn seed_captured(
    store: &Store,
    engine: &Engine,
    psp: &str,
    tag: &str,
    count: u64,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<()> {
    let usd = Currency::parse("USD").expect("USD is a currency");
    let mut start = 0;
    while start < count {
        let end = (start + SEED_CHUNK).min(count);
        let payments: Vec<BenchPayment> = (start..end).map(|i| bench_payment(tag, i)).collect();
        let now = now_ms();
        let mut tx = store.begin_write().await?;
        for chunk in payments.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO payments (id, checkout_id, buyer_id, buyer_email, currency, \
                 amount_minor, status, psp, psp_token, psp_url, psp_reference, return_url, \
                 failure_code, created_at_ms, updated_at_ms) VALUES ",
            );
            sql::push_value_rows(&mut sql, store.backend(), chunk.len(), 15);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for payment in chunk {
                query = query
                    .bind(payment.id.clone())
                    .bind(format!("chk_{}", payment.id))
                    .bind("buyer_bench")
                    .bind(None::<String>)
                    .bind("USD")
                    .bind(payment.amount_minor)
                    .bind("succeeded")
                    .bind(psp.to_owned())
                    .bind(format!("tok_{}", payment.id))
                    .bind(None::<String>)
                    .bind(payment.psp_reference.clone())
                    .bind(None::<String>)
                    .bind(None::<String>)
                    .bind(now)
                    .bind(now);
            }
            query.execute(&mut *tx).await?;

            let mut sql = String::from(
                "INSERT INTO payment_orders (id, payment_id, position, order_id, seller_id, \
                 amount_minor, status, created_at_ms, updated_at_ms) VALUES ",
            );
            sql::push_value_rows(&mut sql, store.backend(), chunk.len(), 9);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for payment in chunk {
                query = query
                    .bind(format!("po_{}", payment.id))
                    .bind(payment.id.clone())
                    .bind(0_i64)
                    .bind("ord_1")
                    .bind(payment.seller_id.clone())
                    .bind(payment.amount_minor)
                    .bind("succeeded")
                    .bind(now)
                    .bind(now);
            }
            query.execute(&mut *tx).await?;
        }
        let captures: Vec<NewJournalTransaction> = payments
            .iter()
            .map(|payment| NewJournalTransaction {
                source_ref: format!("capture:{}", payment.id),
                kind: "capture",
                payment_id: Some(payment.id.clone()),
                postings: vec![
                    Posting::minor(accounts::psp_receivable(psp), payment.amount_minor, usd),
                    Posting::minor(
                        accounts::seller(&payment.seller_id),
                        -payment.amount_minor,
                        usd,
                    ),
                ],
            })
            .collect();
        tx.commit().await?;
        // All at once: the engine batches them.
        futures_util::future::try_join_all(
            captures
                .into_iter()
                .map(|capture| engine.submit(Post(capture))),
        )
        .await?;
        start = end;
        progress(start);
    }
    Ok(())
}

/// Writes the settlement file of the seed: `payments` payment lines, then the payout of their
/// net to the bank (so `payments + 1` lines after the header). Answers the file's size in bytes.
pub fn write_settlement_file(path: &Path, tag: &str, payments: u64) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "{}", COLUMNS.join(","))?;
    let created_at = rfc3339_from_ms(now_ms());
    let batch = format!("stl_bench_{tag}");
    let mut net_total: i64 = 0;
    for i in 0..payments {
        let payment = bench_payment(tag, i);
        let fee = fee_minor(payment.amount_minor);
        let net = payment.amount_minor - fee;
        net_total += net;
        writeln!(
            out,
            "{},{},payment,{created_at},USD,{},{fee},{net},{batch}",
            payment.psp_reference, payment.id, payment.amount_minor
        )?;
    }
    writeln!(
        out,
        "po_bench_{tag},,payout_to_bank,{created_at},USD,{},0,{},{batch}",
        -net_total, -net_total
    )?;
    out.flush()?;
    Ok(out.get_ref().metadata()?.len())
}

/// The database's name and version, for a benchmark's setup.
pub async fn database_version(store: &Store) -> Result<String> {
    let (sql, name) = match store.backend() {
        Backend::Sqlite => ("SELECT sqlite_version() AS v", "SQLite "),
        Backend::Postgres => ("SELECT version() AS v", ""),
    };
    let row = sqlx::query(sql).fetch_one(store.pool()).await?;
    let version: String = row.try_get("v")?;
    Ok(format!("{name}{version}"))
}
