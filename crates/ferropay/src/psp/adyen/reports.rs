//! Adyen's reports downloaded by API: Adyen announces each generated report by a
//! `REPORT_AVAILABLE` notification whose `pspReference` is the report's file name
//! (`settlement_detail_report_batch_7.csv`); the file is then at
//! `{report_base}/{merchant account}/{file name}`, fetched with the key of the report service
//! credential (its own: the Merchant Report Download role), streamed to disk.

use std::path::Path;

use tokio::io::AsyncWriteExt;

use crate::psp::PspError;
use crate::secret::Secret;

/// Where ferropay downloads Adyen's reports from, and with which credential.
#[derive(Clone, Debug)]
pub struct AdyenReportsConfig {
    /// `https://ca-test.adyen.com/reports/download/MerchantAccount` in test mode.
    pub report_base: String,
    /// The report service credential's API key.
    pub api_key: Secret,
}

/// The test environment's report downloads.
pub const TEST_REPORT_BASE: &str = "https://ca-test.adyen.com/reports/download/MerchantAccount";

/// The prefix of a Settlement details report's file name.
pub const SETTLEMENT_DETAIL_PREFIX: &str = "settlement_detail_report_batch_";

/// The `REPORT_AVAILABLE` notification's event type.
pub const REPORT_AVAILABLE: &str = "REPORT_AVAILABLE";

/// A report file name from a `REPORT_AVAILABLE` event id (`REPORT_AVAILABLE:{file}:true`), if it
/// is a Settlement details report's and a plain file name (no path).
pub fn settlement_report_of_event(event_id: &str) -> Option<&str> {
    let name = event_id
        .strip_prefix(REPORT_AVAILABLE)?
        .strip_prefix(':')?
        .strip_suffix(":true")?;
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (plain && name.starts_with(SETTLEMENT_DETAIL_PREFIX) && name.ends_with(".csv")).then_some(name)
}

/// Downloads report `name` of `merchant_account` into `destination` (created or truncated);
/// answers the bytes written. 404 is permanent (no such report); 401/403 too (the credential);
/// 429 and 5xx pass.
pub async fn download(
    http: &reqwest::Client,
    config: &AdyenReportsConfig,
    merchant_account: &str,
    name: &str,
    destination: &Path,
) -> Result<u64, PspError> {
    let url = format!(
        "{}/{merchant_account}/{name}",
        config.report_base.trim_end_matches('/')
    );
    let response = http
        .get(&url)
        .header("X-API-Key", config.api_key.expose())
        .send()
        .await
        .map_err(|e| PspError::Retryable(format!("Adyen's reports unreachable: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let message = format!("Adyen answered {status} for report {name}");
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            PspError::Retryable(message)
        } else {
            PspError::Permanent(message)
        });
    }
    let io = |e: std::io::Error| PspError::Retryable(format!("writing report {name}: {e}"));
    let mut file = tokio::fs::File::create(destination).await.map_err(io)?;
    let mut response = response;
    let mut written = 0_u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| PspError::Retryable(format!("report {name} cut off: {e}")))?
    {
        file.write_all(&chunk).await.map_err(io)?;
        written += chunk.len() as u64;
    }
    file.flush().await.map_err(io)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_from_events() {
        assert_eq!(
            settlement_report_of_event(
                "REPORT_AVAILABLE:settlement_detail_report_batch_7.csv:true"
            ),
            Some("settlement_detail_report_batch_7.csv")
        );
        for other in [
            "REPORT_AVAILABLE:settlement_detail_report_batch_7.csv:false",
            "REPORT_AVAILABLE:payments_accounting_report_2026_12_07.csv:true",
            "REPORT_AVAILABLE:settlement_detail_report_batch_../../x.csv:true",
            "AUTHORISATION:settlement_detail_report_batch_7.csv:true",
        ] {
            assert_eq!(settlement_report_of_event(other), None, "{other}");
        }
    }
}
