//! The statuses of payments and payment orders, and the payment as stored and shown.

use serde::Serialize;

/// A payment event's status: `requires_payment` → `processing` → `succeeded` | `failed` |
/// `expired` (later `partially_refunded` | `refunded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    RequiresPayment,
    Processing,
    Succeeded,
    Failed,
    Expired,
    PartiallyRefunded,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [Self; 7] = [
        Self::RequiresPayment,
        Self::Processing,
        Self::Succeeded,
        Self::Failed,
        Self::Expired,
        Self::PartiallyRefunded,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresPayment => "requires_payment",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the buyer's part is over (the PSP has decided).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::RequiresPayment | Self::Processing)
    }
}

/// A payment order's status: `not_started` → `executing` → `pending` → `succeeded` | `failed` |
/// `expired` (later `refunded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    NotStarted,
    Executing,
    Pending,
    Succeeded,
    Failed,
    Expired,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [Self; 7] = [
        Self::NotStarted,
        Self::Executing,
        Self::Pending,
        Self::Succeeded,
        Self::Failed,
        Self::Expired,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "not_started",
            Self::Executing => "executing",
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A payment event with its orders, as `GET /v1/payments/{id}` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PaymentView {
    pub id: String,
    pub checkout_id: String,
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: String,
    /// The PSP the payment was registered with (`sandbox`, `stripe`, `adyen`).
    pub psp: String,
    pub redirect_url: Option<String>,
    pub return_url: Option<String>,
    pub failure_code: Option<String>,
    pub buyer: BuyerView,
    pub orders: Vec<OrderView>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BuyerView {
    pub id: String,
    pub email: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct OrderView {
    pub id: String,
    pub order_id: String,
    pub seller_id: String,
    pub amount: i64,
    pub status: OrderStatus,
}
