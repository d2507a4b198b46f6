//! Where the commands find the ledger chain's keys (`ferropay::chain_keys`), which must never be
//! in the database they protect:
//!
//! 1. `--ledger-keys` / `FERROPAY_LEDGER_KEYS`: the keys themselves (`ID:HEX,ID:HEX`, last signs);
//! 2. `--ledger-keys-file` / `FERROPAY_LEDGER_KEYS_FILE`: a file of them, created with one new key
//!    if it does not exist yet;
//! 3. neither, on SQLite: `ledger-keys` beside the database file (the data folder), created on
//!    the first start, so the README's `ferropay serve` is keyed with nothing configured;
//! 4. neither, on PostgreSQL: no keys (an unkeyed SHA-256 chain, with a warning): instances share
//!    one database but not a folder, so a key generated per instance would split the chain.
//!    Production configures 1 or 2, the same keys on every instance.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ferropay::chain_keys::ChainKeys;
use ferropay::store::{Backend, Store};

/// The file name of the keys beside a SQLite database.
pub const DEFAULT_KEYS_FILE_NAME: &str = "ledger-keys";

/// How the chain keys were given.
#[derive(Clone, Debug, Default)]
pub struct KeySource {
    /// The keys' text form (from the environment or a flag).
    pub inline: Option<String>,
    pub file: Option<PathBuf>,
}

/// The keys file a SQLite database at `database_url` uses when none is configured.
pub fn default_keys_file(database_url: &str) -> Option<PathBuf> {
    if Backend::from_url(database_url).ok()? != Backend::Sqlite {
        return None;
    }
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    let dir = Path::new(path).parent().unwrap_or(Path::new("."));
    Some(dir.join(DEFAULT_KEYS_FILE_NAME))
}

/// The keys file `source` names or implies, if any (where `ledger rotate-key` writes).
pub fn keys_file(source: &KeySource, database_url: &str) -> Option<PathBuf> {
    source
        .file
        .clone()
        .or_else(|| default_keys_file(database_url))
}

/// The chain keys for `database_url`, creating the keys file where one is due and missing.
pub fn resolve(source: &KeySource, database_url: &str) -> anyhow::Result<Option<ChainKeys>> {
    if let Some(text) = &source.inline {
        return ChainKeys::parse(text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("FERROPAY_LEDGER_KEYS: {e}"));
    }
    let Some(path) = keys_file(source, database_url) else {
        return Ok(None);
    };
    let (keys, created) = ChainKeys::load_or_create(&path).map_err(anyhow::Error::msg)?;
    if created {
        tracing::warn!(
            path = %path.display(), key_id = keys.current().id(),
            "generated the ledger chain key: keep this file, and out of the database's backups"
        );
    }
    Ok(Some(keys))
}

/// Opens (and migrates) the database with its chain keys; warns when a PostgreSQL ledger stays
/// unkeyed.
pub async fn open_store(
    database_url: &str,
    max_connections: u32,
    source: &KeySource,
) -> anyhow::Result<Store> {
    let keys = resolve(source, database_url)?;
    let store = Store::open(database_url, max_connections)
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                crate::serve::redact_url(database_url)
            )
        })?;
    Ok(match keys {
        Some(keys) => store.with_chain_keys(keys),
        None => {
            tracing::warn!(
                "the ledger's hash chain is unkeyed: set FERROPAY_LEDGER_KEYS_FILE (the same \
                 file on every instance) so that someone with the database cannot rewrite it"
            );
            store
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_keys_live_beside_a_sqlite_database_only() {
        assert_eq!(
            default_keys_file("sqlite://./ferropay-data/ferropay.db"),
            Some(PathBuf::from("./ferropay-data/ledger-keys"))
        );
        assert_eq!(
            default_keys_file("sqlite:/var/lib/f/x.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/f/ledger-keys"))
        );
        assert_eq!(default_keys_file("postgres://u@h/db"), None);
    }
}
