//! Storage: one connection pool over SQLite (embedded, the default) or PostgreSQL, chosen by the
//! URL at run time through sqlx's `Any` driver, and the migrations that run on start.
//!
//! Every column is an integer or text (what `Any` carries): money in `*_minor` (`i64`), time in
//! `*_ms` since the epoch. The few places where the dialects truly differ live in [`dialect`];
//! statements with many parameters are written by [`sql`].

pub mod bulk;
pub mod checkpoint;
pub mod dialect;
mod durable;
mod migrations;
pub(crate) mod sql;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};

use crate::chain_keys::ChainKeys;

pub use dialect::Backend;

/// A write transaction. On SQLite it holds the write lock from its first statement.
pub type Tx = Transaction<'static, Any>;

/// How long a request waits for a free database connection before it is answered 503 with
/// `Retry-After` (the database is down, restarting, or overloaded): a few seconds, so that an
/// outage fails requests fast instead of piling them up.
pub const ACQUIRE_TIMEOUT_MS: u64 = 3_000;

/// SQLite's one writer connection: writers queue for it in order, which under load takes
/// longer than a connection from the pool, and is no outage.
const SQLITE_WRITER_ACQUIRE_TIMEOUT_MS: u64 = 30_000;

/// PostgreSQL: the most connections the money engine's lanes hold beside the pool (one per
/// lane; `serve --engine-lanes` takes at most this many).
pub const ENGINE_MAX_CONNECTIONS: u32 = 16;

/// How an engine batch begins on PostgreSQL: index probes, never whole-table plans
/// ([`Store::begin_batch`]).
const BATCH_BEGIN_POSTGRES: &str = "BEGIN; SET LOCAL enable_seqscan = off; \
     SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// The default database: a file beside the working directory, created with its folder.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./ferropay-data/ferropay.db";

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// SQLite only: the one connection that writes, so that writers queue in the pool (in
    /// order, without sleeping) instead of on SQLite's busy lock (which sleeps and retries).
    /// PostgreSQL writes through `pool`.
    write_pool: Option<AnyPool>,
    /// PostgreSQL only: the money engine's own connections, one per lane, beside `pool`
    /// ([`Store::begin_batch`]).
    engine_pool: Option<AnyPool>,
    /// SQLite's write-ahead log, which the money engine syncs after its batches commit
    /// ([`durable`]); `None` on PostgreSQL and for a database in memory.
    wal: Option<durable::WalFile>,
    backend: Backend,
    /// The ledger chain's keys (kept outside the database): the journal transactions written
    /// through this store are HMACs under the last one; `None`: unkeyed SHA-256.
    chain_keys: Option<Arc<ChainKeys>>,
    /// SQLite only: the WAL checkpointer runs while a handle on this store lives.
    _alive: Arc<()>,
}

impl Store {
    /// Connects to `database_url` (`sqlite://PATH` or `postgres://…`) and runs the migrations.
    pub async fn open(database_url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let store = Self::connect(database_url, max_connections).await?;
        migrations::run(&store).await?;
        Ok(store)
    }

    /// Connects without migrating (the migrations need a connection first).
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = Backend::from_url(database_url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(database_url)?,
            Backend::Postgres => database_url.to_owned(),
        };
        let options = |connections: u32, acquire_timeout_ms: u64| {
            AnyPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_millis(acquire_timeout_ms))
                // SQLite's "connection" is a file opened in this process, which cannot go away
                // as a server's can: the ping before each acquire was one more hop to the
                // driver's worker thread on every transaction. (sqlx still pings a connection
                // as it goes back to the pool.)
                .test_before_acquire(backend == Backend::Postgres)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            // WAL lets readers run beside the one writer. FULL sync: a commit
                            // is on disk before it is answered (an embedded payment database
                            // must not lose committed payments on power loss); the money
                            // engine shares one commit among many payments, so it costs
                            // little. Writers queue on the write pool; the busy timeout only
                            // covers the few writes outside it.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA busy_timeout = 30000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            // Checkpoints run beside the writer, not in its commits.
                            conn.execute(checkpoint::NO_AUTO_CHECKPOINT).await?;
                        }
                        Ok(())
                    })
                })
        };
        let pool = options(max_connections.max(1), ACQUIRE_TIMEOUT_MS)
            .connect(&url)
            .await?;
        let write_pool = match backend {
            Backend::Sqlite => Some(
                options(1, SQLITE_WRITER_ACQUIRE_TIMEOUT_MS)
                    .connect(&url)
                    .await?,
            ),
            Backend::Postgres => None,
        };
        // Opened as the engine's lanes first need them, one per lane.
        let engine_pool = match backend {
            Backend::Postgres => {
                Some(options(ENGINE_MAX_CONNECTIONS, ACQUIRE_TIMEOUT_MS).connect_lazy(&url)?)
            }
            Backend::Sqlite => None,
        };
        let wal = match backend {
            Backend::Sqlite => wal_of(&pool).await?,
            Backend::Postgres => None,
        };
        let alive = Arc::new(());
        if backend == Backend::Sqlite {
            checkpoint::start(pool.clone(), Arc::downgrade(&alive));
        }
        Ok(Self {
            pool,
            write_pool,
            engine_pool,
            wal,
            backend,
            chain_keys: None,
            _alive: alive,
        })
    }

    /// This store with the ledger chain's keys: new journal transactions are keyed with the last
    /// one, and `ledger verify` checks each transaction with the key it names.
    pub fn with_chain_keys(mut self, keys: ChainKeys) -> Self {
        self.chain_keys = Some(Arc::new(keys));
        self
    }

    pub fn chain_keys(&self) -> Option<&ChainKeys> {
        self.chain_keys.as_deref()
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction that will write. On SQLite this is `BEGIN IMMEDIATE` on the one
    /// write connection: writers queue for it in order (no busy-lock sleeps), and none fails
    /// when it upgrades a read lock.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        match &self.write_pool {
            Some(writer) => writer.begin_with(durable::BEGIN_WRITE_SQLITE).await,
            None => self.pool.begin().await,
        }
    }

    /// A write transaction for the money engine's batches. On PostgreSQL the planner is told,
    /// for this transaction only, to look each row of a batch up by its index: a batch's
    /// statements join a JSON parameter that the planner guesses at 100 rows, and against a
    /// table of some thousands it preferred hashing a full scan of the table — measured, 21
    /// million rows of `payment_orders` read to write 10,000 payments — and, with sequential
    /// scans off, hashing a full scan of the table's primary key (`auto_explain`: 786 wallets
    /// read to update 16, 1.3 ms of a 4.8 ms statement), a cost that grows with every table.
    /// Hash and merge joins off leave nested loops over the batch's rows, each an index probe:
    /// a batch costs what it writes, whatever the tables hold. The settings ride on the
    /// `BEGIN` (one round trip).
    ///
    /// On PostgreSQL a batch runs on the engine's own connections, not the pool's: a lane then
    /// never waits behind requests for a connection, and each of its few connections keeps the
    /// engine's statements prepared (measured: `bench payments` 0.874× → 1.040× pgbench TPC-B,
    /// load and row phases 3.2–3.6 → 2.5–2.7 and 5.2–5.6 → 4.1–4.3 ms, BENCHMARKS.md).
    ///
    /// On SQLite the batch's commit does not sync: the engine syncs with
    /// [`Store::make_durable`] after the writer has moved on, and before it answers
    /// ([`durable`]).
    pub async fn begin_batch(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Postgres => {
                self.engine_pool
                    .as_ref()
                    .unwrap_or(&self.pool)
                    .begin_with(BATCH_BEGIN_POSTGRES)
                    .await
            }
            Backend::Sqlite => match &self.write_pool {
                Some(writer) => writer.begin_with(durable::BATCH_BEGIN_SQLITE).await,
                None => self.pool.begin().await,
            },
        }
    }

    /// Makes every commit so far durable: on SQLite it syncs the write-ahead log, which the
    /// money engine's batches commit without syncing ([`durable`]); on PostgreSQL a commit is
    /// durable when it returns, and this does nothing.
    pub async fn make_durable(&self) -> std::io::Result<()> {
        match &self.wal {
            Some(wal) => wal.sync().await,
            None => Ok(()),
        }
    }

    /// Picks the statement written for this database where the dialects differ.
    pub fn pick(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        }
    }

    /// Answers once the database does.
    pub async fn ping(&self) -> Result<(), crate::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(writer) = &self.write_pool {
            writer.close().await;
        }
        if let Some(engine) = &self.engine_pool {
            engine.close().await;
        }
        self.pool.close().await;
    }
}

/// The WAL of the SQLite database behind `pool`, from the file SQLite says it opened; `None`
/// for a database in memory.
async fn wal_of(pool: &AnyPool) -> Result<Option<durable::WalFile>, StoreError> {
    use sqlx::Row;
    let rows = sqlx::query("PRAGMA database_list").fetch_all(pool).await?;
    for row in rows {
        let name: String = row.try_get("name")?;
        let file: Option<String> = row.try_get("file")?;
        if name == "main" {
            return Ok(file
                .filter(|file| !file.is_empty())
                .map(|file| durable::WalFile::of(&file)));
        }
    }
    Ok(None)
}

/// Creates the SQLite file's folder and asks the driver to create the file (`mode=rwc`).
fn prepare_sqlite_url(database_url: &str) -> Result<String, StoreError> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::BadUrl(database_url.to_owned()))?;
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(StoreError::BadUrl(database_url.to_owned()));
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Io(format!("creating {}: {e}", parent.display())))?;
    }
    Ok(match query {
        Some(q) if q.contains("mode=") => database_url.to_owned(),
        Some(q) => format!("sqlite://{path}?{q}&mode=rwc"),
        None => format!("sqlite://{path}?mode=rwc"),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL `{0}` is neither sqlite://PATH nor postgres://…")]
    BadUrl(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Whether a database error is a unique-constraint violation (the same key inserted twice).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
