//! The hash chain: each journal transaction's hash covers its predecessor's hash, its own fields
//! and its postings, so a row changed or deleted behind ferropay's back breaks the chain.
//! Fields are length-prefixed, so no choice of text can make two transactions hash alike.
//!
//! With a chain key ([`crate::chain_keys`]) the hash is an HMAC-SHA256 under that key and covers the
//! key's id too: someone who can rewrite the database but does not hold the key cannot recompute
//! it. Without one it is a plain SHA-256 (ledgers written before keys existed, or a library user
//! who configured none).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::Posting;
use crate::chain_keys::ChainKey;

/// What the hash covers of a posting: its account, currency code and signed minor units. The
/// verifier hashes what it reads back, which may not even be a valid currency any more.
pub(crate) trait HashedPosting {
    fn account(&self) -> &str;
    fn currency_code(&self) -> &str;
    fn amount_minor(&self) -> i64;
}

impl HashedPosting for Posting {
    fn account(&self) -> &str {
        &self.account
    }
    fn currency_code(&self) -> &str {
        self.amount.currency().code()
    }
    fn amount_minor(&self) -> i64 {
        self.amount.minor()
    }
}

pub(crate) struct HashInput<'a, P: HashedPosting> {
    pub prev_hash: &'a str,
    pub transaction_id: &'a str,
    pub seq: i64,
    pub source_ref: &'a str,
    pub kind: &'a str,
    pub payment_id: Option<&'a str>,
    pub created_at_ms: i64,
    pub postings: &'a [P],
    /// The chain key it is made with; `None`: unkeyed SHA-256.
    pub key: Option<&'a ChainKey>,
}

/// SHA-256 or HMAC-SHA256, fed the same length-prefixed fields.
enum Hasher {
    Plain(Sha256),
    Keyed(Hmac<Sha256>),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Plain(hasher) => Digest::update(hasher, bytes),
            Self::Keyed(mac) => Mac::update(mac, bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            Self::Plain(hasher) => hex::encode(hasher.finalize()),
            Self::Keyed(mac) => hex::encode(mac.finalize().into_bytes()),
        }
    }
}

/// An HMAC-SHA256 under `key`: HMAC takes a key of any length.
pub(crate) fn keyed_mac(key: &ChainKey) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key.secret()).expect("HMAC takes any key length")
}

pub(crate) fn transaction_hash<P: HashedPosting>(input: &HashInput<'_, P>) -> String {
    let mut hasher = match input.key {
        None => Hasher::Plain(Sha256::new()),
        Some(key) => Hasher::Keyed(keyed_mac(key)),
    };
    let mut field = |value: &str| {
        hasher.update(&(value.len() as u64).to_be_bytes());
        hasher.update(value.as_bytes());
    };
    if let Some(key) = input.key {
        field(key.id());
    }
    field(input.prev_hash);
    field(input.transaction_id);
    field(&input.seq.to_string());
    field(input.source_ref);
    field(input.kind);
    field(input.payment_id.unwrap_or(""));
    field(&input.created_at_ms.to_string());
    for (line_no, posting) in input.postings.iter().enumerate() {
        field(&line_no.to_string());
        field(posting.account());
        field(posting.currency_code());
        field(&posting.amount_minor().to_string());
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(postings: &'a [Posting]) -> HashInput<'a, Posting> {
        HashInput {
            prev_hash: "00",
            transaction_id: "jtx_1",
            seq: 1,
            source_ref: "capture:pay_1",
            kind: "capture",
            payment_id: Some("pay_1"),
            created_at_ms: 1,
            postings,
            key: None,
        }
    }

    #[test]
    fn any_change_changes_the_hash() {
        let usd = crate::money::Currency::parse("USD").unwrap();
        let postings = [Posting::minor("a", 5, usd), Posting::minor("b", -5, usd)];
        let base = transaction_hash(&input(&postings));
        let changed = [Posting::minor("a", 6, usd), Posting::minor("b", -6, usd)];
        assert_ne!(base, transaction_hash(&input(&changed)));
        assert_ne!(base, transaction_hash(&input(&postings[..1])));
        let mut other_prev = input(&postings);
        other_prev.prev_hash = "01";
        assert_ne!(base, transaction_hash(&other_prev));
        assert_eq!(base, transaction_hash(&input(&postings)));
    }

    #[test]
    fn a_keyed_hash_needs_the_key() {
        let usd = crate::money::Currency::parse("USD").unwrap();
        let postings = [Posting::minor("a", 5, usd), Posting::minor("b", -5, usd)];
        let unkeyed = transaction_hash(&input(&postings));
        let keys = crate::chain_keys::ChainKeys::generate().rotated();
        let mut keyed = input(&postings);
        keyed.key = Some(keys.current());
        let with_current = transaction_hash(&keyed);
        assert_ne!(with_current, unkeyed);
        assert_eq!(with_current, transaction_hash(&keyed));
        keyed.key = keys.get(keys.ids().next().unwrap());
        assert_ne!(
            transaction_hash(&keyed),
            with_current,
            "another key, another hash"
        );
    }
}
