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
/// journal, docs/FORMAT.md §19): a read waits for the commit of those answered before it began,
/// so that what a client was answered is what it reads next (read-your-writes), as when every
/// answer followed the commit. Writes answered after the read began are not waited for (a
/// steady stream of decisions must not hold reads up).
#[derive(Debug, Default)]
pub struct Visibility {
    tickets: Mutex<Tickets>,
    committed: Condvar,
}

#[derive(Debug, Default)]
struct Tickets {
    /// The last ticket handed out.
    issued: u64,
    /// Tickets of writes not committed yet.
    outstanding: std::collections::BTreeSet<u64>,
    /// Reads waiting.
    waiting: usize,
}

impl Tickets {
    /// Whether a write answered up to ticket `upto` still awaits its commit.
    fn behind(&self, upto: u64) -> bool {
        self.outstanding.first().is_some_and(|&t| t <= upto)
    }
}

/// Longest a read waits for answered writes to be committed (a commit takes a few milliseconds;
/// a store that cannot commit is not waited for).
const VISIBLE_WAIT: Duration = Duration::from_secs(1);

impl Visibility {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tickets> {
        self.tickets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A write is about to be answered before its commit; [`PendingWrite`] ends it when
    /// dropped (after its commit returned, or once it cannot happen).
    #[must_use]
    pub fn begin(self: &Arc<Self>) -> PendingWrite {
        let mut t = self.lock();
        t.issued += 1;
        let ticket = t.issued;
        t.outstanding.insert(ticket);
        PendingWrite(Arc::clone(self), ticket)
    }

    /// Waits until every write answered before this call has been committed (at most a second).
    pub fn wait(&self) {
        let mut t = self.lock();
        let upto = t.issued;
        if !t.behind(upto) {
            return;
        }
        t.waiting += 1;
        let mut t = match self
            .committed
            .wait_timeout_while(t, VISIBLE_WAIT, |t| t.behind(upto))
        {
            Ok((t, _)) => t,
            Err(e) => e.into_inner().0,
        };
        t.waiting -= 1;
    }
}

/// One write answered before its commit (see [`Visibility::begin`]).
#[derive(Debug)]
pub struct PendingWrite(Arc<Visibility>, u64);

impl Drop for PendingWrite {
    fn drop(&mut self) {
        let mut t = self.0.lock();
        t.outstanding.remove(&self.1);
        if t.waiting > 0 {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A read waits for the commit of writes answered before it began, and not for writes
    /// answered after (a steady stream of answers must not hold it up).
    #[test]
    fn a_read_waits_for_writes_answered_before_it_not_after() {
        let v = Arc::new(Visibility::default());
        let first = v.begin();
        let reader = Arc::clone(&v);
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            reader.wait();
            tx.send(()).unwrap();
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while v.lock().waiting == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the read never waited"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let later = v.begin();
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "did not wait"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the read waited for a write answered after it began");
        h.join().unwrap();
        // A read that begins now waits for `later`.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = Arc::clone(&v);
        let h = std::thread::spawn(move || {
            reader.wait();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        drop(later);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        h.join().unwrap();
        // With nothing outstanding, a read does not wait at all.
        v.wait();
    }
}
