//! The chart of accounts (DESIGN.md): account names are text such as `seller:seller_a`.

pub const PLATFORM_FEES: &str = "platform_fees";
pub const BANK: &str = "bank";
pub const PAYOUTS_IN_TRANSIT: &str = "payouts_in_transit";

const SELLER_PREFIX: &str = "seller:";
/// `psp_receivable:{psp}`: what that PSP owes us.
pub const PSP_RECEIVABLE_PREFIX: &str = "psp_receivable:";

/// Asset: what the PSP owes us.
pub fn psp_receivable(psp: &str) -> String {
    format!("{PSP_RECEIVABLE_PREFIX}{psp}")
}

/// Expense: the PSP's fees.
pub fn psp_fees(psp: &str) -> String {
    format!("psp_fees:{psp}")
}

/// Liability: what we owe a seller (the wallet).
pub fn seller(seller_id: &str) -> String {
    format!("{SELLER_PREFIX}{seller_id}")
}

/// The seller whose wallet an account is, if it is a seller account.
pub fn seller_id(account: &str) -> Option<&str> {
    account.strip_prefix(SELLER_PREFIX)
}
