//! The connectors' settings: the `ferropay.toml` file (`--config`), overridden by the
//! environment. Secrets come from the environment or from files the config names
//! (`secret_key_file = "/run/secrets/stripe"`), never from the config file itself, and never
//! print ([`Secret`]). A connector is on when its table is in the file or its key is in the
//! environment.
//!
//! ```toml
//! [routing]
//! default = "sandbox"          # payments that name no PSP and match no currency
//! payouts = "stripe"           # seller payouts (Connect transfers)
//! currencies = { EUR = "adyen" }
//!
//! [stripe]
//! api_base = "https://api.stripe.com"
//! secret_key_file = "/run/secrets/stripe_secret_key"
//! webhook_secret_file = "/run/secrets/stripe_webhook_secret"
//!
//! [adyen]
//! merchant_account = "MarketplaceECOM"
//! checkout_base = "https://checkout-test.adyen.com/v72"
//! api_key_file = "/run/secrets/adyen_api_key"
//! hmac_key_file = "/run/secrets/adyen_hmac_key"
//! balance_account_id = "BA00000000000000000000001"   # seller payouts (Transfers API)
//! transfers_api_key_file = "/run/secrets/adyen_transfers_api_key"
//! balance_platform_hmac_key_file = "/run/secrets/adyen_balance_platform_hmac_key"
//! report_api_key_file = "/run/secrets/adyen_report_api_key"   # reports by API
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::adyen::AdyenConfig;
use super::adyen::reports::{AdyenReportsConfig, TEST_REPORT_BASE};
use super::adyen::transfers::{AdyenPayoutsConfig, TEST_TRANSFERS_BASE};
use super::registry::Routing;
use super::stripe::StripeConfig;
use crate::secret::Secret;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub routing: RoutingFile,
    pub stripe: Option<StripeFile>,
    pub adyen: Option<AdyenFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingFile {
    pub default: Option<String>,
    pub payouts: Option<String>,
    #[serde(default)]
    pub currencies: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeFile {
    pub api_base: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    pub webhook_secret_file: Option<PathBuf>,
    pub webhook_tolerance_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdyenFile {
    pub checkout_base: Option<String>,
    pub merchant_account: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub hmac_key_file: Option<PathBuf>,
    /// Seller payouts through the Transfers API: on when the platform's balance account is set.
    pub balance_account_id: Option<String>,
    pub transfers_base: Option<String>,
    pub transfers_api_key_file: Option<PathBuf>,
    pub balance_platform_hmac_key_file: Option<PathBuf>,
    /// Settlement details reports downloaded by API: on when the report credential is set.
    pub report_base: Option<String>,
    pub report_api_key_file: Option<PathBuf>,
}

/// The real PSPs' settings, resolved (the sandbox is configured by `serve`'s own flags).
#[derive(Clone, Debug, Default)]
pub struct PspSettings {
    pub routing: Routing,
    pub stripe: Option<StripeConfig>,
    pub adyen: Option<AdyenConfig>,
}

/// Reads `path` (if any) and the environment through `env` (`std::env::var` in production).
pub fn load(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PspSettings, String> {
    let file = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            toml::from_str::<ConfigFile>(&text).map_err(|e| {
                // The message and the line only: toml's own rendering quotes the line, which
                // could hold a secret pasted where it does not belong.
                let line = e
                    .span()
                    .map_or(0, |span| text[..span.start].matches('\n').count() + 1);
                format!("{} line {line}: {}", path.display(), e.message())
            })?
        }
        None => ConfigFile::default(),
    };
    resolve(file, env)
}

/// The file's settings with the environment's on top.
pub fn resolve(
    file: ConfigFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PspSettings, String> {
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    let routing = Routing {
        default: file.routing.default,
        by_currency: file.routing.currencies,
        payouts: file.routing.payouts,
    };

    let stripe_key = env("FERROPAY_STRIPE_SECRET_KEY");
    let stripe = match (file.stripe, stripe_key.is_some()) {
        (None, false) => None,
        (table, _) => {
            let table = table.unwrap_or_default();
            let defaults = StripeConfig::default();
            Some(StripeConfig {
                secret_key: secret(
                    stripe_key,
                    table.secret_key_file.as_deref(),
                    "FERROPAY_STRIPE_SECRET_KEY",
                    "stripe.secret_key_file",
                )?,
                webhook_secret: secret(
                    env("FERROPAY_STRIPE_WEBHOOK_SECRET"),
                    table.webhook_secret_file.as_deref(),
                    "FERROPAY_STRIPE_WEBHOOK_SECRET",
                    "stripe.webhook_secret_file",
                )?,
                api_base: env("FERROPAY_STRIPE_API_BASE")
                    .or(table.api_base)
                    .unwrap_or(defaults.api_base),
                webhook_tolerance_s: table
                    .webhook_tolerance_s
                    .unwrap_or(defaults.webhook_tolerance_s),
                ..defaults
            })
        }
    };

    let adyen_key = env("FERROPAY_ADYEN_API_KEY");
    let adyen = match (file.adyen, adyen_key.is_some()) {
        (None, false) => None,
        (table, _) => {
            let table = table.unwrap_or_default();
            let defaults = AdyenConfig::default();
            Some(AdyenConfig {
                api_key: secret(
                    adyen_key,
                    table.api_key_file.as_deref(),
                    "FERROPAY_ADYEN_API_KEY",
                    "adyen.api_key_file",
                )?,
                hmac_key: secret(
                    env("FERROPAY_ADYEN_HMAC_KEY"),
                    table.hmac_key_file.as_deref(),
                    "FERROPAY_ADYEN_HMAC_KEY",
                    "adyen.hmac_key_file",
                )?,
                merchant_account: env("FERROPAY_ADYEN_MERCHANT_ACCOUNT")
                    .or(table.merchant_account)
                    .ok_or(
                        "Adyen needs FERROPAY_ADYEN_MERCHANT_ACCOUNT or adyen.merchant_account",
                    )?,
                checkout_base: env("FERROPAY_ADYEN_CHECKOUT_BASE")
                    .or(table.checkout_base)
                    .unwrap_or(defaults.checkout_base),
                payouts: match env("FERROPAY_ADYEN_BALANCE_ACCOUNT_ID").or(table.balance_account_id)
                {
                    None => None,
                    Some(balance_account_id) => Some(AdyenPayoutsConfig {
                        transfers_base: env("FERROPAY_ADYEN_TRANSFERS_BASE")
                            .or(table.transfers_base)
                            .unwrap_or_else(|| TEST_TRANSFERS_BASE.to_owned()),
                        api_key: secret(
                            env("FERROPAY_ADYEN_TRANSFERS_API_KEY"),
                            table.transfers_api_key_file.as_deref(),
                            "FERROPAY_ADYEN_TRANSFERS_API_KEY",
                            "adyen.transfers_api_key_file",
                        )?,
                        balance_account_id,
                        hmac_key: secret(
                            env("FERROPAY_ADYEN_BALANCE_PLATFORM_HMAC_KEY"),
                            table.balance_platform_hmac_key_file.as_deref(),
                            "FERROPAY_ADYEN_BALANCE_PLATFORM_HMAC_KEY",
                            "adyen.balance_platform_hmac_key_file",
                        )?,
                    }),
                },
                reports: match (
                    env("FERROPAY_ADYEN_REPORT_API_KEY"),
                    table.report_api_key_file.as_deref(),
                ) {
                    (None, None) => None,
                    (key, file) => Some(AdyenReportsConfig {
                        report_base: env("FERROPAY_ADYEN_REPORT_BASE")
                            .or(table.report_base)
                            .unwrap_or_else(|| TEST_REPORT_BASE.to_owned()),
                        api_key: secret(
                            key,
                            file,
                            "FERROPAY_ADYEN_REPORT_API_KEY",
                            "adyen.report_api_key_file",
                        )?,
                    }),
                },
                ..defaults
            })
        }
    };
    Ok(PspSettings {
        routing,
        stripe,
        adyen,
    })
}

/// A secret from the environment, else from the file the config names; one of them is needed.
fn secret(
    from_env: Option<String>,
    file: Option<&Path>,
    env_name: &str,
    file_key: &str,
) -> Result<Secret, String> {
    if let Some(value) = from_env {
        return Ok(Secret::new(value));
    }
    let Some(path) = file else {
        return Err(format!("set {env_name} or {file_key}"));
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{file_key} {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(format!("{file_key} {} is empty", path.display()));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn the_environment_alone_turns_stripe_on_with_the_test_defaults() {
        let settings = resolve(
            ConfigFile::default(),
            &env_of(&[
                ("FERROPAY_STRIPE_SECRET_KEY", "sk_test_1"),
                ("FERROPAY_STRIPE_WEBHOOK_SECRET", "whsec_1"),
            ]),
        )
        .unwrap();
        let stripe = settings.stripe.unwrap();
        assert_eq!(stripe.secret_key.expose(), "sk_test_1");
        assert_eq!(stripe.api_base, "https://api.stripe.com");
        assert!(settings.adyen.is_none());
        assert!(!format!("{stripe:?}").contains("sk_test_1"));
    }

    #[test]
    fn the_file_names_secret_files_and_routing() {
        let dir = std::env::temp_dir().join(format!("ferropay-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("key"), "AQEyhmfxK\n").unwrap();
        std::fs::write(dir.join("hmac"), "44782DEF547AAA06C910C43932B1EB0C").unwrap();
        let text = format!(
            "[routing]\ncurrencies = {{ EUR = \"adyen\" }}\n\n[adyen]\nmerchant_account = \"Shop\"\n\
             api_key_file = \"{0}/key\"\nhmac_key_file = \"{0}/hmac\"\n",
            dir.display()
        );
        std::fs::write(dir.join("ferropay.toml"), text).unwrap();
        let settings = load(Some(&dir.join("ferropay.toml")), &env_of(&[])).unwrap();
        let adyen = settings.adyen.unwrap();
        assert_eq!(adyen.api_key.expose(), "AQEyhmfxK");
        assert_eq!(adyen.merchant_account, "Shop");
        assert_eq!(adyen.checkout_base, "https://checkout-test.adyen.com/v72");
        assert_eq!(settings.routing.by_currency["EUR"], "adyen");
        // The environment wins over the file.
        let settings = load(
            Some(&dir.join("ferropay.toml")),
            &env_of(&[("FERROPAY_ADYEN_MERCHANT_ACCOUNT", "Other")]),
        )
        .unwrap();
        assert_eq!(settings.adyen.unwrap().merchant_account, "Other");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn adyen_payouts_and_reports_turn_on_with_their_own_credentials() {
        const BASE: [(&str, &str); 3] = [
            ("FERROPAY_ADYEN_API_KEY", "AQE_key"),
            ("FERROPAY_ADYEN_HMAC_KEY", "00ff"),
            ("FERROPAY_ADYEN_MERCHANT_ACCOUNT", "Shop"),
        ];
        let adyen = resolve(ConfigFile::default(), &env_of(&BASE))
            .unwrap()
            .adyen
            .unwrap();
        assert!(adyen.payouts.is_none() && adyen.reports.is_none());
        const ALL: [(&str, &str); 7] = [
            BASE[0],
            BASE[1],
            BASE[2],
            ("FERROPAY_ADYEN_BALANCE_ACCOUNT_ID", "BA1"),
            ("FERROPAY_ADYEN_TRANSFERS_API_KEY", "AQE_transfers"),
            ("FERROPAY_ADYEN_BALANCE_PLATFORM_HMAC_KEY", "11ee"),
            ("FERROPAY_ADYEN_REPORT_API_KEY", "AQE_report"),
        ];
        let adyen = resolve(ConfigFile::default(), &env_of(&ALL))
            .unwrap()
            .adyen
            .unwrap();
        let payouts = adyen.payouts.clone().unwrap();
        assert_eq!(payouts.balance_account_id, "BA1");
        assert_eq!(payouts.api_key.expose(), "AQE_transfers");
        assert_eq!(payouts.transfers_base, TEST_TRANSFERS_BASE);
        let reports = adyen.reports.clone().unwrap();
        assert_eq!(reports.api_key.expose(), "AQE_report");
        assert_eq!(reports.report_base, TEST_REPORT_BASE);
        assert!(!format!("{adyen:?}").contains("AQE_transfers"));
        // A balance account without the Transfers API's own key: refused, naming it.
        const HALF: [(&str, &str); 4] = [
            BASE[0],
            BASE[1],
            BASE[2],
            ("FERROPAY_ADYEN_BALANCE_ACCOUNT_ID", "BA1"),
        ];
        let error = resolve(ConfigFile::default(), &env_of(&HALF)).unwrap_err();
        assert!(
            error.contains("FERROPAY_ADYEN_TRANSFERS_API_KEY"),
            "{error}"
        );
    }

    #[test]
    fn a_secret_in_the_file_is_refused_without_being_repeated() {
        let dir = std::env::temp_dir().join(format!("ferropay-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ferropay.toml");
        std::fs::write(&path, "[stripe]\nsecret_key = \"sk_live_do_not_print\"\n").unwrap();
        let error = load(Some(&path), &env_of(&[])).unwrap_err();
        assert!(error.contains("secret_key"), "{error}");
        assert!(error.contains("line 2"), "{error}");
        assert!(!error.contains("sk_live_do_not_print"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_secrets_and_unknown_keys_are_refused() {
        let error = resolve(
            ConfigFile {
                stripe: Some(StripeFile::default()),
                ..ConfigFile::default()
            },
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(error.contains("FERROPAY_STRIPE_SECRET_KEY"), "{error}");
        let error = toml::from_str::<ConfigFile>("[stripe]\nsecret_key = \"sk_live\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("secret_key"), "{error}");
    }
}
