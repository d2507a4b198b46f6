//! A day's settlement from the reports a PSP announced that day (Adyen publishes a Settlement
//! details report per batch and says so by a `REPORT_AVAILABLE` notification): the announcing
//! events received in the UTC day are found among the PSP's recorded webhooks, each named report
//! is downloaded, and the reports are joined into one file (the first one's header, then every
//! report's records) for one reconciliation run.

use std::path::Path;

use sqlx::Row;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::psp::{Connector, PspError};
use crate::store::Store;

const DAY_MS: i64 = 86_400_000;

/// Downloads the reports `connector` announced by `event_type` on `date` into `destination`;
/// answers the bytes written. No report announced that day is permanent (there is nothing to
/// reconcile yet); a report whose header differs from the first one's is refused.
pub(crate) async fn fetch_day(
    store: &Store,
    connector: &dyn Connector,
    event_type: &str,
    date: time::Date,
    destination: &Path,
) -> Result<u64, PspError> {
    let from_ms = date.midnight().assume_utc().unix_timestamp() * 1_000;
    // The day's webhooks by `webhook_events_received` (one day's, not the table's).
    let rows = sqlx::query(
        "SELECT event_id FROM webhook_events WHERE received_at_ms >= $1 AND received_at_ms < $2 \
         AND psp = $3 AND event_type = $4 ORDER BY received_at_ms, event_id",
    )
    .bind(from_ms)
    .bind(from_ms + DAY_MS)
    .bind(connector.name())
    .bind(event_type)
    .fetch_all(store.pool())
    .await
    .map_err(|e| PspError::Retryable(format!("reading the announced reports: {e}")))?;
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        let event_id: String = row
            .try_get("event_id")
            .map_err(|e| PspError::Retryable(e.to_string()))?;
        if let Some(name) = connector.settlement_report_name(&event_id)
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(PspError::Permanent(format!(
            "{} announced no settlement report on {date} ({event_type})",
            connector.name()
        )));
    }
    let io = |e: std::io::Error| PspError::Retryable(format!("joining the reports: {e}"));
    let mut out = tokio::fs::File::create(destination).await.map_err(io)?;
    let mut header: Option<String> = None;
    let mut written = 0_u64;
    for name in &names {
        let part = destination.with_extension(format!("part-{}", uuid::Uuid::now_v7().simple()));
        let downloaded = connector.settlement_report(name, &part).await;
        let joined = async {
            downloaded?;
            let file = tokio::fs::File::open(&part).await.map_err(io)?;
            let mut lines = BufReader::new(file).lines();
            let Some(first) = lines.next_line().await.map_err(io)? else {
                return Ok(());
            };
            match &header {
                None => {
                    written += write_line(&mut out, &first).await.map_err(io)?;
                    header = Some(first);
                }
                Some(header) if *header == first => {}
                Some(_) => {
                    return Err(PspError::Permanent(format!(
                        "report {name}'s columns differ from {}'s",
                        names[0]
                    )));
                }
            }
            while let Some(line) = lines.next_line().await.map_err(io)? {
                if !line.is_empty() {
                    written += write_line(&mut out, &line).await.map_err(io)?;
                }
            }
            Ok(())
        }
        .await;
        let _ = tokio::fs::remove_file(&part).await;
        joined?;
    }
    out.flush().await.map_err(io)?;
    tracing::info!(psp = connector.name(), %date, reports = ?names, "announced settlement reports fetched");
    Ok(written)
}

async fn write_line(out: &mut tokio::fs::File, line: &str) -> std::io::Result<u64> {
    out.write_all(line.as_bytes()).await?;
    out.write_all(b"\n").await?;
    Ok(line.len() as u64 + 1)
}
