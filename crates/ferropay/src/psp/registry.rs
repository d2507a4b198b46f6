//! The PSP connectors configured at once, by name, and the routing rule that picks one for a new
//! payment: the PSP the request names, else the one configured for the payment's currency, else
//! the default (the sandbox unless configured otherwise). A payment keeps the PSP it was
//! registered with (`payments.psp`): its refunds, polls and webhooks go to that connector even
//! if the routing changes later. Seller payouts go through one configured connector.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Connector;
use crate::error::{Error, Result};

/// Which connector serves what (the `[routing]` table of `ferropay.toml`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    /// The connector of payments that neither name one nor match a currency rule; `None`: the
    /// first configured connector.
    pub default: Option<String>,
    /// ISO 4217 code → connector name (`EUR = "adyen"`).
    pub by_currency: BTreeMap<String, String>,
    /// The connector that pays sellers out; `None`: the default connector.
    pub payouts: Option<String>,
}

/// The configured connectors. Cheap to share (`Arc`).
pub struct Connectors {
    by_name: BTreeMap<String, Arc<dyn Connector>>,
    default: String,
    by_currency: BTreeMap<String, String>,
    payouts: String,
}

impl Connectors {
    /// One connector, which serves everything.
    pub fn single(connector: Arc<dyn Connector>) -> Self {
        Self::new(vec![connector], &Routing::default()).expect("one connector routes alone")
    }

    /// Checks that names are unique and that every rule names a configured connector.
    pub fn new(connectors: Vec<Arc<dyn Connector>>, routing: &Routing) -> Result<Self, String> {
        let first = connectors
            .first()
            .map(|c| c.name().to_owned())
            .ok_or("no PSP connector is configured")?;
        let mut by_name = BTreeMap::new();
        for connector in connectors {
            let name = connector.name().to_owned();
            if by_name.insert(name.clone(), connector).is_some() {
                return Err(format!("the PSP `{name}` is configured twice"));
            }
        }
        let known = |rule: &str, name: &str| -> Result<String, String> {
            if by_name.contains_key(name) {
                Ok(name.to_owned())
            } else {
                Err(format!(
                    "routing: {rule} names the PSP `{name}`, which is not configured (configured: {})",
                    by_name.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        };
        let default = match &routing.default {
            Some(name) => known("default", name)?,
            None => first,
        };
        let payouts = match &routing.payouts {
            Some(name) => known("payouts", name)?,
            None => default.clone(),
        };
        let mut by_currency = BTreeMap::new();
        for (currency, name) in &routing.by_currency {
            crate::money::Currency::parse(currency)
                .map_err(|e| format!("routing: currency `{currency}`: {e}"))?;
            by_currency.insert(currency.clone(), known(currency, name)?);
        }
        Ok(Self {
            by_name,
            default,
            by_currency,
            payouts,
        })
    }

    /// The connector named `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Connector>> {
        self.by_name.get(name)
    }

    /// The connector of a payment registered with `psp`; an error when it is no longer
    /// configured (the payment cannot be polled or refunded then).
    pub fn of(&self, psp: &str) -> Result<&Arc<dyn Connector>> {
        self.get(psp).ok_or_else(|| {
            Error::Internal(format!(
                "the PSP `{psp}` is not configured on this instance"
            ))
        })
    }

    /// The default connector.
    pub fn default_connector(&self) -> &Arc<dyn Connector> {
        &self.by_name[&self.default]
    }

    /// The connector that pays sellers out.
    pub fn payouts(&self) -> &Arc<dyn Connector> {
        &self.by_name[&self.payouts]
    }

    /// The routing rule: `requested` (the request's `psp`) if given, else the currency's
    /// connector, else the default. Naming an unknown PSP is the request's fault (`psp`).
    pub fn route(&self, requested: Option<&str>, currency: &str) -> Result<&Arc<dyn Connector>> {
        if let Some(name) = requested {
            return self.get(name).ok_or_else(|| {
                Error::invalid(
                    "psp",
                    format!(
                        "no PSP named `{name}` is configured (configured: {})",
                        self.names().join(", ")
                    ),
                )
            });
        }
        let name = self.by_currency.get(currency).unwrap_or(&self.default);
        Ok(&self.by_name[name])
    }

    /// The configured connectors' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// Every configured connector.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Connector>> {
        self.by_name.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psp::sandbox::SandboxConnector;
    use crate::psp::stripe::{StripeConfig, StripeConnector};
    use crate::secret::Secret;

    fn connectors(routing: &Routing) -> Result<Connectors, String> {
        let sandbox = SandboxConnector::new(
            "http://127.0.0.1:1",
            Secret::new("k"),
            Secret::new("w"),
            1_000,
            None,
        )
        .unwrap();
        let stripe = StripeConnector::new(StripeConfig {
            secret_key: Secret::new("sk_test_x"),
            webhook_secret: Secret::new("whsec_x"),
            ..StripeConfig::default()
        })
        .unwrap();
        Connectors::new(vec![Arc::new(sandbox), Arc::new(stripe)], routing)
    }

    #[test]
    fn the_request_then_the_currency_then_the_default_decides() {
        let routing = Routing {
            by_currency: [("EUR".to_owned(), "stripe".to_owned())].into(),
            ..Routing::default()
        };
        let all = connectors(&routing).unwrap();
        assert_eq!(all.route(None, "USD").unwrap().name(), "sandbox");
        assert_eq!(all.route(None, "EUR").unwrap().name(), "stripe");
        assert_eq!(all.route(Some("sandbox"), "EUR").unwrap().name(), "sandbox");
        let error = all.route(Some("paypal"), "EUR").err().unwrap();
        assert!(matches!(error, Error::Invalid { ref field, .. } if field == "psp"));
        assert_eq!(all.payouts().name(), "sandbox");
    }

    #[test]
    fn rules_must_name_configured_connectors() {
        let routing = Routing {
            default: Some("adyen".into()),
            ..Routing::default()
        };
        let error = connectors(&routing).err().unwrap();
        assert!(error.contains("`adyen`"), "{error}");
        let routing = Routing {
            by_currency: [("EURO".to_owned(), "stripe".to_owned())].into(),
            ..Routing::default()
        };
        assert!(connectors(&routing).is_err());
    }
}
