//! The hash chain: each journal transaction's hash covers its predecessor's hash, its own fields
//! and its postings, so a row changed or deleted behind ferropay's back breaks the chain.
//! Fields are length-prefixed, so no choice of text can make two transactions hash alike.

use sha2::{Digest, Sha256};

use super::Posting;

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
}

pub(crate) fn transaction_hash<P: HashedPosting>(input: &HashInput<'_, P>) -> String {
    let mut hasher = Sha256::new();
    let mut field = |value: &str| {
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value.as_bytes());
    };
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
    hex::encode(hasher.finalize())
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
}
