//! Signed checkpoints of the hash chain, kept outside the database: the head's sequence number,
//! hash and transaction id, with the time, signed with an HMAC-SHA256 under the chain's current
//! key. Someone who rewrites the database cannot make a ledger that still extends a checkpoint
//! (its hash at that sequence would have to stay the same), and cannot forge a new one without
//! the key.
//!
//! Why HMAC and not a public-key signature (ed25519): the threat is someone with the database
//! but without the key file; the key file already has to be kept from them for the chain's
//! HMACs, so checkpoints need no second secret, and no new dependency. The price: whoever checks
//! a checkpoint holds the key (and could make one); an auditor who must verify without being
//! able to sign would need public-key signatures.
//!
//! A checkpoint file is JSON lines, one checkpoint per line, appended and synced to disk.

use std::io::Write;
use std::path::Path;

use hmac::Mac;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::hash::keyed_mac;
use crate::chain_keys::ChainKeys;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::store::Store;

/// What a checkpoint's signature covers before its fields: no transaction hash starts so
/// (key ids have no spaces).
const DOMAIN: &str = "ferropay ledger checkpoint v1";

/// The chain's head at a moment, signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub transaction_id: Option<String>,
    pub at_ms: i64,
    pub key_id: String,
    /// Hex HMAC-SHA256 under the key `key_id`.
    pub signature: String,
}

impl Checkpoint {
    /// Signs the head (`seq`, `hash`, `transaction_id`) with the ring's current key.
    pub fn sign(
        keys: &ChainKeys,
        seq: i64,
        hash: String,
        transaction_id: Option<String>,
        at_ms: i64,
    ) -> Self {
        let key_id = keys.current().id().to_owned();
        let mut checkpoint = Self {
            seq,
            hash,
            transaction_id,
            at_ms,
            key_id,
            signature: String::new(),
        };
        let mac = checkpoint
            .mac(keys)
            .expect("the current key is in the ring");
        checkpoint.signature = hex::encode(mac.finalize().into_bytes());
        checkpoint
    }

    /// Whether the signature is the ring's key's HMAC of the fields.
    pub fn check_signature(&self, keys: &ChainKeys) -> std::result::Result<(), String> {
        let what = format!("checkpoint at sequence {}", self.seq);
        let mac = self.mac(keys).ok_or_else(|| {
            format!(
                "{what} is signed with chain key {}, which this verifier does not hold",
                self.key_id
            )
        })?;
        let signature = hex::decode(&self.signature)
            .map_err(|_| format!("{what}: the signature is not hex"))?;
        mac.verify_slice(&signature)
            .map_err(|_| format!("{what}: the signature does not match: it was altered or forged"))
    }

    fn mac(&self, keys: &ChainKeys) -> Option<hmac::Hmac<sha2::Sha256>> {
        let key = keys.get(&self.key_id)?;
        let mut mac = keyed_mac(key);
        let seq = self.seq.to_string();
        let at_ms = self.at_ms.to_string();
        for field in [
            DOMAIN,
            &self.key_id,
            &seq,
            &self.hash,
            self.transaction_id.as_deref().unwrap_or(""),
            &at_ms,
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        Some(mac)
    }
}

/// Signs the ledger's head as it is now (committed transactions only). The store must have keys.
pub async fn take(store: &Store) -> Result<Checkpoint> {
    let keys = store
        .chain_keys()
        .ok_or_else(|| Error::Internal("a checkpoint needs the chain keys".into()))?;
    let head = sqlx::query("SELECT seq, hash, transaction_id FROM ledger_head WHERE id = 1")
        .fetch_one(store.pool())
        .await?;
    Ok(Checkpoint::sign(
        keys,
        head.try_get("seq")?,
        head.try_get("hash")?,
        head.try_get("transaction_id")?,
        now_ms(),
    ))
}

/// Appends `checkpoint` to the file at `path` (created if missing) as one JSON line, on disk
/// before this returns.
pub fn append(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut line = serde_json::to_string(checkpoint).map_err(std::io::Error::other)?;
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Every checkpoint in a file of JSON lines (blank lines skipped).
pub fn read_file(path: &Path) -> std::result::Result<Vec<Checkpoint>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading checkpoints {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: not a checkpoint: {e}", path.display(), n + 1))
        })
        .collect()
}

/// Writes a checkpoint to `path` (and the log) every `every_ms` while the head moves, until the
/// task is aborted.
pub fn spawn_writer(
    store: Store,
    path: std::path::PathBuf,
    every_ms: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_seq = None;
        loop {
            match take(&store).await {
                Ok(checkpoint) if last_seq != Some(checkpoint.seq) => {
                    tracing::info!(
                        seq = checkpoint.seq, hash = %checkpoint.hash,
                        key_id = %checkpoint.key_id, signature = %checkpoint.signature,
                        at_ms = checkpoint.at_ms, "ledger checkpoint"
                    );
                    match append(&path, &checkpoint) {
                        Ok(()) => last_seq = Some(checkpoint.seq),
                        Err(error) => {
                            tracing::error!(path = %path.display(), %error, "checkpoint not written")
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "ledger checkpoint not taken; will retry"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(every_ms)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_unaltered() {
        let keys = ChainKeys::generate();
        let checkpoint = Checkpoint::sign(&keys, 7, "ab".repeat(32), Some("jtx_7".into()), 1);
        assert_eq!(checkpoint.check_signature(&keys), Ok(()));
        let rotated = keys.rotated();
        assert_eq!(
            checkpoint.check_signature(&rotated),
            Ok(()),
            "older keys still verify"
        );
        assert!(checkpoint.check_signature(&ChainKeys::generate()).is_err());
        let mut altered = checkpoint.clone();
        altered.seq = 8;
        assert!(altered.check_signature(&keys).is_err());
        let mut altered = checkpoint.clone();
        altered.hash = "cd".repeat(32);
        assert!(altered.check_signature(&keys).is_err());
        let mut altered = checkpoint;
        altered.signature = "00".repeat(32);
        assert!(altered.check_signature(&keys).is_err());
    }
}
