//! Disputes as a PSP reports them (`dispute.created|won|lost` webhooks, or asked for by id): the
//! buyer's bank took (part of) a captured payment back, and later decided for us or against.

/// Where a dispute stands at the PSP. Only forward: `needs_response` → `under_review` (evidence
/// sent) → `won` | `lost`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DisputeStatus {
    NeedsResponse,
    UnderReview,
    Won,
    Lost,
}

impl DisputeStatus {
    pub const ALL: [Self; 4] = [
        Self::NeedsResponse,
        Self::UnderReview,
        Self::Won,
        Self::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NeedsResponse => "needs_response",
            Self::UnderReview => "under_review",
            Self::Won => "won",
            Self::Lost => "lost",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// How far along: a dispute only ever moves to a higher rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::NeedsResponse => 0,
            Self::UnderReview => 1,
            Self::Won | Self::Lost => 2,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 2
    }
}

/// One dispute as the PSP tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisputeUpdate {
    /// The PSP's dispute id (also the `psp_reference` of its settlement lines).
    pub psp_dispute_id: String,
    /// Our payment id (the merchant reference of the disputed payment).
    pub reference: String,
    /// The disputed amount, in minor units of `currency`: what the PSP took back.
    pub amount_minor: i64,
    pub currency: String,
    /// The card network's reason (`fraudulent`, `product_not_received`, …).
    pub reason: String,
    pub status: DisputeStatus,
}
