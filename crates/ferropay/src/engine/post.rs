//! The engine's one built-in command: post a balanced journal transaction as it is (transfers
//! between the platform's accounts: reconciliation's fees and bank settlements, the ledger
//! benchmark). A source reference posted before answers `AlreadyPosted` and writes nothing.

use super::command::{Command, Keys};
use super::effect::Staged;
use super::view::View;
use crate::error::Result;
use crate::ledger::{NewJournalTransaction, PostOutcome, accounts};

/// Posts one journal transaction (moving the wallets of the seller accounts it names).
pub struct Post(pub NewJournalTransaction);

impl Command for Post {
    type Answer = PostOutcome;

    fn keys(&self, keys: &mut Keys) {
        keys.source_refs.insert(self.0.source_ref.clone());
        for posting in &self.0.postings {
            if let Some(seller_id) = accounts::seller_id(&posting.account) {
                keys.wallets
                    .insert((seller_id.to_owned(), posting.amount.currency()));
            }
        }
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<PostOutcome> {
        staged.post(view, self.0.clone())
    }
}
