//! What a PSP made of a call we may have lost the answer of ("reverse only on proof"): a refund
//! or payout found by the idempotency key of our request. Only [`MadeByKey::NotMade`] (or a
//! settlement that failed) lets ferropay fail a refund or reverse a payout after an error
//! answer: an expired or rotated key may refuse a retry that the provider had already served.

use super::SettlementUpdate;

/// The PSP's answer to "did our call with this idempotency key take effect?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MadeByKey {
    /// No such call took effect: the refund or payout was never made.
    NotMade,
    /// It was made: the PSP's id for it, and how it ended if it has (`None` while pending).
    Made {
        psp_id: String,
        settled: Option<SettlementUpdate>,
    },
}
