//! SQLite's group commit with the sync outside the write lock: how an engine batch is made
//! durable after the one writer has moved on.
//!
//! With `synchronous = FULL` SQLite syncs the WAL inside `COMMIT`, while it still holds the
//! write lock: the next batch waits for the disk (1.2 ms of a 3.1 ms batch at 500 payments/s,
//! BENCHMARKS.md). The money engine's batches instead commit with `synchronous = NORMAL` (set on
//! the `BEGIN`, [`BATCH_BEGIN_SQLITE`]), which writes the WAL's frames without syncing them, and
//! the engine calls [`WalFile::sync`] before it answers anyone: an `fdatasync` of the WAL file
//! that starts after the commit's frames were written covers them, and every frame before them.
//! Meanwhile the writer is free for the next batch. Every other write transaction keeps `FULL`
//! ([`BEGIN_WRITE_SQLITE`] sets it back on the one write connection), and so syncs, at its own
//! commit, whatever batches came before it.
//!
//! What it changes, and what it does not:
//!
//! - Nothing is answered before it is on disk: a batch's callers, the API clients and the PSP's
//!   webhooks among them, hear back only after the sync. A power loss loses only unanswered
//!   commands, as before, and their senders send them again.
//! - A batch's rows are visible to readers for the length of the sync (about a millisecond)
//!   before they are durable. What acts outside the database on what it reads syncs first: the
//!   outbox relay calls [`super::Store::make_durable`] before it publishes, and so does an
//!   idempotency key's replay of a saved answer before it answers; the job workers (a
//!   merchant webhook's delivery, a refund's or a payout's call to the PSP) and the webhook
//!   dispatcher start with a `FULL` write transaction, which syncs. A power loss inside that
//!   millisecond can still take back what a `GET` has shown, with the command that wrote it,
//!   which its sender, never answered, repeats.
//! - SQLite's own recovery is untouched: frames that did not reach the disk fail their checksums
//!   and are ignored, as with `NORMAL` alone; checkpoints run on the reading pool, with `FULL`.

use std::path::PathBuf;

/// How the write connection begins an engine batch on SQLite: its commit writes without syncing.
pub(super) const BATCH_BEGIN_SQLITE: &str = "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE";

/// How it begins every other write transaction: its commit syncs (and so syncs every batch
/// before it).
pub(super) const BEGIN_WRITE_SQLITE: &str = "PRAGMA synchronous = FULL; BEGIN IMMEDIATE";

/// A SQLite database's write-ahead log, synced by path.
#[derive(Clone, Debug)]
pub(crate) struct WalFile {
    path: PathBuf,
}

impl WalFile {
    /// The WAL of the database file at `database_path` (SQLite names it `<file>-wal`).
    pub(crate) fn of(database_path: &str) -> Self {
        Self {
            path: PathBuf::from(format!("{database_path}-wal")),
        }
    }

    /// Syncs the WAL's data to disk. A WAL that is gone has been checkpointed into the database
    /// file, which the checkpoint synced, and removed: nothing is left to sync.
    pub(crate) async fn sync(&self) -> std::io::Result<()> {
        let path = self.path.clone();
        let synced = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(file) => file.sync_data(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        })
        .await;
        match synced {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wal_is_synced_and_a_missing_one_needs_nothing() {
        let dir = std::env::temp_dir().join(format!("ferropay-wal-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let database = dir.join("ferropay.db");
        let wal = WalFile::of(database.to_str().unwrap());
        assert_eq!(wal.path, dir.join("ferropay.db-wal"));
        wal.sync().await.expect("no WAL: nothing to sync");
        std::fs::write(&wal.path, b"frames").unwrap();
        wal.sync().await.expect("the WAL is synced");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
