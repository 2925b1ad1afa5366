//! A pool of read-only store connections for the handlers (SQLite in WAL mode: readers see the
//! last committed state while the writer works).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use blackbox_ledger::datadir::StoreLocation;
use blackbox_store::Store;

use crate::error::ServerError;

/// Most idle connections kept.
const KEEP: usize = 8;

/// Read-only connections to one store.
#[derive(Debug)]
pub struct ReaderPool {
    location: StoreLocation,
    idle: Mutex<Vec<Box<dyn Store>>>,
    visible: Arc<Visibility>,
}

/// Writes answered before the store has committed them (a decision durable in the commit
/// journal, docs/FORMAT.md §19): a read waits for their commit, so that what a client was
/// answered is what it reads next (read-your-writes), as when every answer followed the commit.
#[derive(Debug, Default)]
pub struct Visibility {
    pending: Mutex<u64>,
    committed: Condvar,
}

/// Longest a read waits for answered writes to be committed (a commit takes a millisecond; a
/// store that cannot commit is not waited for).
const VISIBLE_WAIT: Duration = Duration::from_secs(1);

impl Visibility {
    /// A write is about to be answered before its commit; [`PendingWrite`] ends it when
    /// dropped (after its commit returned, or once it cannot happen).
    #[must_use]
    pub fn begin(self: &Arc<Self>) -> PendingWrite {
        *self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        PendingWrite(Arc::clone(self))
    }

    /// Waits until no answered write awaits its commit (at most a second).
    pub fn wait(&self) {
        let n = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *n == 0 {
            return;
        }
        let _ = self
            .committed
            .wait_timeout_while(n, VISIBLE_WAIT, |n| *n > 0)
            .map_err(|_| ());
    }
}

/// One write answered before its commit (see [`Visibility::begin`]).
#[derive(Debug)]
pub struct PendingWrite(Arc<Visibility>);

impl Drop for PendingWrite {
    fn drop(&mut self) {
        let mut n = self
            .0
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.committed.notify_all();
        }
    }
}

/// A connection on loan; returned to the pool when dropped.
#[derive(Debug)]
pub struct Reader<'p> {
    pool: &'p ReaderPool,
    store: Option<Box<dyn Store>>,
}

impl std::ops::Deref for Reader<'_> {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        // Present from construction until drop.
        match &self.store {
            Some(s) => s.as_ref(),
            None => unreachable!("a reader holds its store until it is dropped"),
        }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.store.take() {
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < KEEP {
                idle.push(s);
            }
        }
    }
}

impl ReaderPool {
    /// A pool over the store at `location`.
    #[must_use]
    pub fn new(location: StoreLocation) -> Self {
        Self::with_visibility(location, Arc::default())
    }

    /// A pool whose reads wait for the writes `visible` counts (shared with the writer).
    #[must_use]
    pub fn with_visibility(location: StoreLocation, visible: Arc<Visibility>) -> Self {
        Self {
            location,
            idle: Mutex::new(Vec::new()),
            visible,
        }
    }

    /// Where the store is.
    #[must_use]
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// A connection (an idle one, or a new one), once every write already answered is
    /// committed (see [`Visibility`]). Blocks: call it off the async threads.
    ///
    /// # Errors
    /// Store failures when opening.
    pub fn get(&self) -> Result<Reader<'_>, ServerError> {
        self.visible.wait();
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let store = match idle {
            Some(s) => s,
            None => blackbox_ledger::open::open_location(&self.location, true)?,
        };
        Ok(Reader {
            pool: self,
            store: Some(store),
        })
    }
}
