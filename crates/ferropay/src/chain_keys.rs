//! The hash chain's keys: HMAC-SHA256 secrets kept outside the database they protect (a file or
//! an environment variable), each with an id that every journal transaction records, so that a
//! key can be rotated (a new last key) while the transactions made with older ones still verify.
//!
//! The text form, in a file or in `FERROPAY_LEDGER_KEYS`, is one key per line (or per comma):
//! `KEY_ID:HEX_SECRET`, the secret at least 32 bytes; `#` starts a comment line. The LAST key
//! signs new transactions and checkpoints; the others only verify.

use std::fmt;
use std::io::Write;
use std::path::Path;

/// Bytes of a generated secret (and the least a configured one may have).
pub const SECRET_BYTES: usize = 32;

/// One chain key: its id (recorded beside each hash) and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChainKey {
    id: String,
    secret: Vec<u8>,
}

impl ChainKey {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainKey({}, [redacted])", self.id)
    }
}

/// Every key a ledger's chain may use; the last one signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainKeys {
    keys: Vec<ChainKey>,
}

impl ChainKeys {
    /// Parses the text form (see the module's header). At least one key; ids unique.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys: Vec<ChainKey> = Vec::new();
        for entry in text.split(['\n', ',']) {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (id, secret_hex) = entry
                .split_once(':')
                .ok_or_else(|| "a chain key is written KEY_ID:HEX_SECRET".to_owned())?;
            check_id(id)?;
            let secret = hex::decode(secret_hex.trim())
                .map_err(|_| format!("chain key {id}: the secret is not hexadecimal"))?;
            if secret.len() < SECRET_BYTES {
                return Err(format!(
                    "chain key {id}: the secret must have at least {SECRET_BYTES} bytes"
                ));
            }
            if keys.iter().any(|key| key.id == id) {
                return Err(format!("chain key {id} is listed twice"));
            }
            keys.push(ChainKey {
                id: id.to_owned(),
                secret,
            });
        }
        if keys.is_empty() {
            return Err("no chain key".to_owned());
        }
        Ok(Self { keys })
    }

    /// A ring of one new random key.
    pub fn generate() -> Self {
        Self {
            keys: vec![new_key()],
        }
    }

    /// The ring with a new random key added last (it signs from now on).
    pub fn rotated(&self) -> Self {
        let mut keys = self.keys.clone();
        let mut key = new_key();
        while keys.iter().any(|k| k.id == key.id) {
            key = new_key();
        }
        keys.push(key);
        Self { keys }
    }

    /// The key that signs new transactions and checkpoints.
    pub fn current(&self) -> &ChainKey {
        self.keys.last().expect("a ring has at least one key")
    }

    pub fn get(&self, id: &str) -> Option<&ChainKey> {
        self.keys.iter().find(|key| key.id == id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|key| key.id.as_str())
    }

    /// The text form, one key per line.
    pub fn to_text(&self) -> String {
        let mut text = String::from(
            "# ferropay ledger chain keys (KEY_ID:HEX_SECRET); the last one signs. Keep this \
             file out of the database's backups and readable by ferropay only.\n",
        );
        for key in &self.keys {
            text.push_str(&format!("{}:{}\n", key.id, hex::encode(&key.secret)));
        }
        text
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the chain keys {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads the keys at `path`, or creates the file (mode 0600, with its folder) holding one new
    /// key. Answers whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), String> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let keys = Self::generate();
        keys.write_new(path)?;
        Ok((keys, true))
    }

    /// Writes the ring to `path` (replacing it through a temporary file and a rename, so that a
    /// crash leaves the old file or the new one, never half of one).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        self.write_new(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| format!("replacing {}: {e}", path.display()))
    }

    fn write_new(&self, path: &Path) -> Result<(), String> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|e| format!("creating the chain keys {}: {e}", path.display()))?;
        file.write_all(self.to_text().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("writing the chain keys {}: {e}", path.display()))
    }
}

fn new_key() -> ChainKey {
    let secret: [u8; SECRET_BYTES] = rand::random();
    let id: [u8; 4] = rand::random();
    ChainKey {
        id: format!("lk_{}", hex::encode(id)),
        secret: secret.to_vec(),
    }
}

/// Key ids are recorded in the database and printed: 1 to 64 letters, digits, `_` or `-`.
fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(())
        .ok_or_else(|| format!("`{id}` is not a chain key id (1 to 64 letters, digits, _ or -)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_round_trips_and_the_last_key_signs() {
        let keys = ChainKeys::generate().rotated();
        let parsed = ChainKeys::parse(&keys.to_text()).unwrap();
        assert_eq!(parsed, keys);
        assert_eq!(parsed.ids().count(), 2);
        assert_eq!(parsed.current().id(), keys.ids().last().unwrap());
        let first = keys.ids().next().unwrap();
        assert!(parsed.get(first).is_some());
        assert!(
            !format!("{:?}", parsed.current()).contains(&hex::encode(parsed.current().secret()))
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        let secret = "ab".repeat(SECRET_BYTES);
        assert!(ChainKeys::parse(&format!("k1:{secret}, k2:{secret}")).is_ok());
        for bad in [
            String::new(),
            "# only a comment".to_owned(),
            format!("k1 {secret}"),
            format!("k 1:{secret}"),
            "k1:abcd".to_owned(),
            format!("k1:{}", "zz".repeat(SECRET_BYTES)),
            format!("k1:{secret}\nk1:{secret}"),
        ] {
            assert!(ChainKeys::parse(&bad).is_err(), "{bad}");
        }
    }
}
