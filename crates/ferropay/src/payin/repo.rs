//! Reading payments back: the payment event with its orders, as the API and pages show it.

use sqlx::{AnyConnection, Row};

use super::model::{BuyerView, OrderStatus, OrderView, PaymentStatus, PaymentView};
use crate::clock::rfc3339_from_ms;
use crate::error::{Error, Result};
use crate::store::{Store, Tx};

/// The payment `payment_id`, or `Error::NotFound`.
pub async fn load_view(store: &Store, payment_id: &str) -> Result<PaymentView> {
    let mut conn = store.pool().acquire().await?;
    load_view_on(&mut conn, payment_id).await
}

/// The same, on a given connection or transaction (to see its own writes).
pub async fn load_view_on(conn: &mut AnyConnection, payment_id: &str) -> Result<PaymentView> {
    let row = sqlx::query(
        "SELECT id, checkout_id, buyer_id, buyer_email, currency, amount_minor, status, psp, psp_url, \
         return_url, failure_code, created_at_ms, updated_at_ms FROM payments WHERE id = $1",
    )
    .bind(payment_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::NotFound(format!("payment `{payment_id}`")))?;

    let order_rows = sqlx::query(
        "SELECT id, order_id, seller_id, amount_minor, status FROM payment_orders \
         WHERE payment_id = $1 ORDER BY position",
    )
    .bind(payment_id)
    .fetch_all(&mut *conn)
    .await?;
    let orders = order_rows
        .iter()
        .map(|o| {
            let status: String = o.try_get("status")?;
            Ok(OrderView {
                id: o.try_get("id")?,
                order_id: o.try_get("order_id")?,
                seller_id: o.try_get("seller_id")?,
                amount: o.try_get("amount_minor")?,
                status: OrderStatus::parse(&status)
                    .ok_or_else(|| Error::Internal(format!("order status `{status}`")))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let status: String = row.try_get("status")?;
    Ok(PaymentView {
        id: row.try_get("id")?,
        checkout_id: row.try_get("checkout_id")?,
        status: PaymentStatus::parse(&status)
            .ok_or_else(|| Error::Internal(format!("payment status `{status}`")))?,
        amount: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        psp: row.try_get("psp")?,
        redirect_url: row.try_get("psp_url")?,
        return_url: row.try_get("return_url")?,
        failure_code: row.try_get("failure_code")?,
        buyer: BuyerView {
            id: row.try_get("buyer_id")?,
            email: row.try_get("buyer_email")?,
        },
        orders,
        created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
        updated_at: rfc3339_from_ms(row.try_get("updated_at_ms")?),
    })
}

/// Our payment id for what a PSP calls `reference`: the payment itself when it is our id, else the
/// payment registered with `psp` under that PSP reference (Stripe's disputes name the
/// PaymentIntent, not our id). `None` when neither.
pub async fn resolve_payment_id(
    store: &Store,
    psp: &str,
    reference: &str,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT id FROM payments WHERE id = $1 \
         UNION ALL SELECT id FROM payments WHERE psp = $2 AND psp_reference = $1",
    )
    .bind(reference)
    .bind(psp)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.map(|row| row.try_get("id")).transpose()?)
}

/// Locks the payment row for the rest of the transaction (PostgreSQL row lock; SQLite's write
/// transaction already holds the database's one write lock).
pub(crate) async fn lock_payment(
    store: &Store,
    tx: &mut Tx,
    payment_id: &str,
) -> Result<Option<sqlx::any::AnyRow>> {
    Ok(sqlx::query(store.pick(
        "SELECT id, status, amount_minor, currency, psp, checkout_id, platform_fee_bps \
         FROM payments WHERE id = $1",
        "SELECT id, status, amount_minor, currency, psp, checkout_id, platform_fee_bps \
         FROM payments WHERE id = $1 FOR UPDATE",
    ))
    .bind(payment_id)
    .fetch_optional(&mut **tx)
    .await?)
}
