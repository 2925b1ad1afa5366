//! A pool of read-only store connections for the handlers (SQLite in WAL mode: readers see the
//! last committed state while the writer works).

use std::sync::Mutex;

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
        Self {
            location,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Where the store is.
    #[must_use]
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// A connection (an idle one, or a new one).
    ///
    /// # Errors
    /// Store failures when opening.
    pub fn get(&self) -> Result<Reader<'_>, ServerError> {
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
