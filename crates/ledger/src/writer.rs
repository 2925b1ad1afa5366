//! The writer: sequence, sign, store and checkpoint.
//!
//! Data flows one way: a [`NormalizedEvent`] (already validated and redacted) gets its chain's
//! next `seq`, a strictly increasing UUIDv7, the previous entry's hash and the current HMAC key;
//! the sealed line goes to the store together with the chain head, Merkle nodes and any
//! checkpoint due, in one all-or-nothing batch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use blackbox_core::Hash;
use blackbox_core::checkpoint::{Checkpoint, SignedCheckpoint};
use blackbox_core::entry::{
    GENESIS_HASH, NormalizedEvent, SealParams, format_timestamp, make_sidecar, next_entry_id, seal,
};
use blackbox_core::ids::{KeyId, TenantId};
use blackbox_core::keys::{HmacKey, Keyring};
use blackbox_core::merkle::{CompactRange, leaf_hash};
use blackbox_core::note::NoteSigner;
use std::sync::mpsc;

use blackbox_store::{
    ArchiveSegment, ChainHead, Erasure, NewEntry, PersonalRecord, Purge, Store, StoreError,
    StoredAnchor, StoredCheckpoint, SubjectEntry, WriteBatch,
};

use crate::clock::Clock;
use crate::error::LedgerError;
use crate::journal::CommitJournal;

/// Merkle subtrees of this height are stored, so proofs read at most 2^8 leaves per level.
pub const NODE_LEVEL: u8 = 8;
/// Entries handed to the store per call inside a batch.
const FLUSH_EVERY: usize = 4096;

/// One entry the writer sequenced and signed (its tenant is the event's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number.
    pub seq: u64,
    /// UUIDv7.
    pub entry_id: uuid::Uuid,
    /// SHA-256 of the entry line.
    pub entry_hash: Hash,
}

/// What one batch did. Constant size per chain, whatever the number of entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Entries appended.
    pub count: u64,
    /// Per chain: the first and last seq appended.
    pub chains: BTreeMap<String, (u64, u64)>,
    /// Checkpoints signed (tenant, size).
    pub checkpoints: Vec<(String, u64)>,
}

struct ChainWork {
    head: ChainHead,
    tree: CompactRange,
    last_id: Option<uuid::Uuid>,
    entries: Vec<NewEntry>,
    nodes: Vec<(u64, Hash)>,
    dirty: bool,
}

/// Random bytes for entry ids, fetched from the OS in blocks.
struct RandomPool {
    buf: Vec<u8>,
    pos: usize,
}

impl RandomPool {
    fn new() -> Self {
        Self {
            buf: vec![0; 4096],
            pos: 4096,
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], LedgerError> {
        if self.pos + N > self.buf.len() {
            getrandom::fill(&mut self.buf).map_err(LedgerError::Random)?;
            self.pos = 0;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }
}

/// Signs checkpoints for one log.
#[derive(Debug)]
pub struct CheckpointSigner {
    signer: NoteSigner,
}

impl CheckpointSigner {
    /// Wraps the note signer; its name is the log name.
    #[must_use]
    pub fn new(signer: NoteSigner) -> Self {
        Self { signer }
    }

    /// The log name (the signed-note key name).
    #[must_use]
    pub fn log_name(&self) -> &str {
        self.signer.name()
    }

    /// The checkpoint origin of a tenant's chain: `<log name>/<tenant>`.
    #[must_use]
    pub fn origin(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.signer.name())
    }

    /// Signs a checkpoint for `tenant` at `size` with `root`, stamped `now_ms`.
    ///
    /// # Errors
    /// [`LedgerError::Checkpoint`].
    pub fn sign(
        &self,
        tenant: &str,
        size: u64,
        root: Hash,
        now_ms: i64,
    ) -> Result<StoredCheckpoint, LedgerError> {
        let ts = format_timestamp(now_ms).map_err(LedgerError::Inconsistent)?;
        let cp = Checkpoint {
            origin: self.origin(tenant),
            size,
            root,
            extensions: vec![format!("timestamp {ts}")],
        };
        let signed = SignedCheckpoint::sign(cp, &self.signer)?;
        Ok(StoredCheckpoint {
            tenant_id: tenant.to_owned(),
            size,
            ts_ms: now_ms,
            note: signed.note_text(),
        })
    }
}

/// Settings the writer needs.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Tenant for events without one.
    pub default_tenant: TenantId,
    /// Checkpoint every this many entries per chain.
    pub checkpoint_every_entries: u64,
    /// Checkpoint at least this often (ms).
    pub checkpoint_every_ms: i64,
    /// How far a claimed timestamp may lie from the writer's clock before it is marked.
    pub clock: blackbox_core::entry::ClockBound,
}

/// Appends to a store. One writer per store at a time (the store serialises batches).
///
/// With a forward-secure current HMAC generation (docs/FORMAT.md §17), the writer moves to the
/// epoch of its clock before signing: it writes the evolved state to the keyring file first
/// ([`Writer::with_keyring_file`]) and only then signs with the new epoch's key, dropping
/// (zeroing) the earlier state.
pub struct Writer {
    keys: Keyring,
    keyring_file: Option<PathBuf>,
    signer: CheckpointSigner,
    settings: WriterSettings,
    random: RandomPool,
    /// Key of the keyed hashes the store indexes data-subject ids under.
    subject_key: Option<HmacKey>,
    /// Where the writer reads the time (entry ids, checkpoints, forward-secure epochs).
    time: Clock,
    /// The data directory's writer lock, held while the writer lives.
    _lock: Option<std::fs::File>,
    /// Where batches answered before their store commit are made durable first (see
    /// [`crate::journal`]).
    journal: Option<CommitJournal>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("keys", &self.keys)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl ChainWork {
    /// Signs a checkpoint of the chain as it stands and records it in the head.
    fn checkpoint(
        &mut self,
        signer: &CheckpointSigner,
        tenant: &str,
        now_ms: i64,
    ) -> Result<StoredCheckpoint, LedgerError> {
        let cp = signer.sign(tenant, self.head.size, self.tree.root(), now_ms)?;
        self.head.last_checkpoint_size = self.head.size;
        self.head.last_checkpoint_ms = now_ms;
        Ok(cp)
    }
}

fn load_work(batch: &mut dyn WriteBatch, tenant: &str) -> Result<ChainWork, LedgerError> {
    let head = batch.chain_head(tenant)?;
    chain_work(tenant, head)
}

fn chain_work(tenant: &str, head: Option<ChainHead>) -> Result<ChainWork, LedgerError> {
    let head = head.unwrap_or_else(|| ChainHead {
        tenant_id: tenant.to_owned(),
        size: 0,
        head_hash: GENESIS_HASH,
        last_entry_id: [0; 16],
        merkle_state: CompactRange::new().to_bytes(),
        last_checkpoint_size: 0,
        last_checkpoint_ms: 0,
    });
    let tree = CompactRange::from_bytes(&head.merkle_state).map_err(|e| {
        LedgerError::Inconsistent(format!(
            "chain `{tenant}`: stored Merkle state is unreadable ({e})"
        ))
    })?;
    if tree.size() != head.size {
        return Err(LedgerError::Inconsistent(format!(
            "chain `{tenant}`: Merkle state covers {} entries but the head says {}",
            tree.size(),
            head.size
        )));
    }
    let last_id = (head.size > 0).then(|| uuid::Uuid::from_bytes(head.last_entry_id));
    Ok(ChainWork {
        head,
        tree,
        last_id,
        entries: Vec::new(),
        nodes: Vec::new(),
        dirty: false,
    })
}

impl Writer {
    /// A writer signing with the keyring's current key.
    ///
    /// # Errors
    /// [`LedgerError::Inconsistent`] when the keyring is empty.
    pub fn new(
        keys: Keyring,
        signer: CheckpointSigner,
        settings: WriterSettings,
    ) -> Result<Self, LedgerError> {
        if keys.current().is_none() {
            return Err(LedgerError::Inconsistent(
                "the HMAC keyring holds no key".to_owned(),
            ));
        }
        Ok(Self {
            keys,
            keyring_file: None,
            signer,
            settings,
            random: RandomPool::new(),
            subject_key: None,
            time: Clock::system(),
            _lock: None,
            journal: None,
        })
    }

    /// Keeps a commit journal at `path` ([`crate::journal`]): [`AppendSink::commit_journaled`]
    /// then makes a batch durable there before the store has committed it. Only for a store no
    /// other writer appends to (a journalled batch is re-appended after a crash, on top of what
    /// the store holds). [`Self::recover_journal`] must run before the first batch.
    #[must_use]
    pub fn with_journal(mut self, path: PathBuf) -> Self {
        self.journal = Some(CommitJournal::new(path));
        self
    }

    /// Appends what the commit journal holds that `store` has not committed (batches answered
    /// as durable whose store commit did not happen: a crash, a failed commit), exactly as
    /// signed, each in its own batch that records it as committed. Returns how many entries were
    /// appended. Without a journal, nothing to do.
    ///
    /// # Errors
    /// The journal cannot be read, a record does not continue the store's chains (the store
    /// was replaced or restored from a backup: the error says which file to move aside), store
    /// failures.
    pub fn recover_journal(&mut self, store: &mut dyn Store) -> Result<u64, LedgerError> {
        let Some(j) = &mut self.journal else {
            return Ok(0);
        };
        j.begin_recovery();
        let path = j.path().to_owned();
        let bytes = j.read()?;
        let committed: u64 = match store.meta(crate::journal::JOURNAL_META)? {
            None => 0,
            Some(v) => v.parse().map_err(|_| {
                LedgerError::Inconsistent(format!(
                    "the store's `{}` is not a number: {v:?}",
                    crate::journal::JOURNAL_META
                ))
            })?,
        };
        let due: Vec<_> = crate::journal::records(&bytes)
            .into_iter()
            .filter(|r| r.batch > committed)
            .collect();
        let last = due.last().map_or(committed, |r| r.batch);
        let mut appended = 0u64;
        if !due.is_empty() {
            let now = self.now_ms();
            self.stream_unchecked(store, |sink| {
                for r in &due {
                    let chains = crate::journal::decode(r.payload).map_err(|e| {
                        LedgerError::Inconsistent(format!(
                            "{e} (batch {}, offset {} of {})",
                            r.batch,
                            r.offset,
                            path.display()
                        ))
                    })?;
                    for (tenant, entries) in chains {
                        for e in entries {
                            sink.add_signed(&tenant, e, now).map_err(|e| {
                                LedgerError::Inconsistent(format!(
                                    "{} holds batch {} (answered as durable, not in the store) \
                                     that does not continue the store's chains: {e}. Was the \
                                     store replaced or restored from a backup? Move the journal \
                                     aside to open the store without its entries.",
                                    path.display(),
                                    r.batch
                                ))
                            })?;
                            appended += 1;
                        }
                    }
                    sink.send(StoreCmd::Meta(
                        crate::journal::JOURNAL_META.to_owned(),
                        r.batch.to_string(),
                    ))?;
                    sink.commit(now, false)?;
                }
                Ok(())
            })?;
        }
        if let Some(j) = &mut self.journal {
            j.recovered(last);
        }
        Ok(appended)
    }

    /// Sets the subject-index key (`keys/subject-index.key`): events naming data subjects are
    /// refused without it.
    #[must_use]
    pub fn with_subject_key(mut self, key: HmacKey) -> Self {
        self.subject_key = Some(key);
        self
    }

    /// The keyed hash the store indexes `subject_id` under (FORMAT.md §5).
    ///
    /// # Errors
    /// [`LedgerError::Inconsistent`] when the writer has no subject-index key.
    pub fn subject_index_key(&self, subject_id: &str) -> Result<[u8; 32], LedgerError> {
        let key = self.subject_key.as_ref().ok_or_else(no_subject_key)?;
        Ok(blackbox_core::erasure::subject_index_key(key, subject_id))
    }

    /// Reads the time from `clock` (the system clock unless set).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.time = clock;
        self
    }

    /// The writer's clock.
    #[must_use]
    pub fn time(&self) -> &Clock {
        &self.time
    }

    /// The writer's clock read now, Unix ms.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.time.now_ms()
    }

    /// Holds the data directory's writer lock (released when the writer is dropped).
    #[must_use]
    pub fn with_lock(mut self, lock: std::fs::File) -> Self {
        self._lock = Some(lock);
        self
    }

    /// The keyring file the keys came from: a forward-secure generation's evolved state is
    /// written back to it (atomically, before any entry is signed with it).
    #[must_use]
    pub fn with_keyring_file(mut self, path: PathBuf) -> Self {
        self.keyring_file = Some(path);
        self
    }

    /// The checkpoint signer.
    #[must_use]
    pub fn signer(&self) -> &CheckpointSigner {
        &self.signer
    }

    fn current_key(&self) -> Result<(KeyId, HmacKey), LedgerError> {
        self.keys
            .current()
            .map(|(id, k)| (id, k.clone()))
            .ok_or_else(|| LedgerError::Inconsistent("the HMAC keyring holds no key".to_owned()))
    }

    /// How far a claimed timestamp may lie from this writer's clock before it is marked.
    #[must_use]
    pub fn clock(&self) -> blackbox_core::entry::ClockBound {
        self.settings.clock
    }

    /// Moves a forward-secure current generation to the epoch of `now_ms`, if that is later
    /// than the one held: the keyring file first, then the keys in memory. Returns whether the
    /// key changed.
    fn evolve(&mut self, now_ms: i64) -> Result<bool, LedgerError> {
        let Some(next) = self.keys.advanced_for(now_ms) else {
            return Ok(false);
        };
        let (Some(generation), Some(path)) = (next.current_generation(), &self.keyring_file) else {
            return Err(LedgerError::Inconsistent(
                "the forward-secure HMAC key entered a new epoch but the writer has no keyring file to write it to".to_owned(),
            ));
        };
        let epoch = next
            .forward_secure(generation.as_str())
            .map_or(0, |info| info.epoch);
        crate::datadir::advance_keyring_file(path, generation.as_str(), epoch)?;
        // The keyring with the earlier state is dropped here, and its secrets zeroed.
        self.keys = next;
        Ok(true)
    }

    /// Streams events into `store`: `f` adds them through the [`AppendSink`] on this thread
    /// (sequencing and signing) while a store thread applies the writes, so hashing and storage
    /// proceed side by side. Each [`AppendSink::commit`] ends one all-or-nothing batch; whatever
    /// was added after the last commit when `f` returns is rolled back.
    ///
    /// # Errors
    /// The first error of `f`, of the store or of signing.
    pub fn stream<T>(
        &mut self,
        store: &mut dyn Store,
        f: impl FnOnce(&mut AppendSink<'_>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        if let Some(j) = &self.journal
            && j.needs_recovery()
        {
            return Err(LedgerError::Inconsistent(format!(
                "the commit journal {} may hold entries the store has not committed: they are \
                 appended first (Writer::recover_journal)",
                j.path().display()
            )));
        }
        self.stream_unchecked(store, f)
    }

    fn stream_unchecked<T>(
        &mut self,
        store: &mut dyn Store,
        f: impl FnOnce(&mut AppendSink<'_>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let (key_id, key) = self.current_key()?;
        let evolve_at = self.keys.next_epoch_at_ms();
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<StoreCmd>(8);
            let (spent_tx, spent_rx) = mpsc::channel::<Vec<NewEntry>>();
            let failed = Arc::new(AtomicBool::new(false));
            let failed_w = Arc::clone(&failed);
            let committed = self.journal.as_ref().map(CommitJournal::committed);
            let worker = scope.spawn(move || {
                store_worker(store, &rx, &spent_tx, &failed_w, committed.as_deref());
            });
            let mut sink = AppendSink {
                writer: self,
                tx,
                spent: spent_rx,
                failed,
                key_id,
                key,
                evolve_at,
                chains: BTreeMap::new(),
                checkpoints: Vec::new(),
                outcome: BatchOutcome::default(),
                flushed: false,
                unjournalled: false,
                plain_in_flight: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            };
            let result = f(&mut sink);
            drop(sink); // closes the channel: an uncommitted batch is rolled back
            worker
                .join()
                .map_err(|_| LedgerError::Inconsistent("the store thread panicked".to_owned()))?;
            result
        })
    }

    /// Appends `events` in one all-or-nothing batch, then signs a closing checkpoint for every
    /// chain that grew when `close` is set. `now_ms` is the writer's clock.
    ///
    /// # Errors
    /// Store failures (nothing of the batch is then visible), signing failures.
    pub fn append(
        &mut self,
        store: &mut dyn Store,
        events: &[NormalizedEvent],
        now_ms: i64,
        close: bool,
    ) -> Result<BatchOutcome, LedgerError> {
        self.stream(store, |sink| {
            for ev in events {
                sink.add(ev, now_ms)?;
            }
            sink.commit(now_ms, close)
        })
    }

    /// Signs a checkpoint for every chain whose last one is older than the checkpoint interval
    /// (a heartbeat when nothing was logged since), or for all chains when `force` is set.
    /// Returns (tenant, size) of each checkpoint written.
    ///
    /// # Errors
    /// Store and signing failures.
    pub fn heartbeat(
        &mut self,
        store: &mut dyn Store,
        now_ms: i64,
        force: bool,
    ) -> Result<Vec<(String, u64)>, LedgerError> {
        let heads = store.chains()?;
        let mut batch = store.begin()?;
        let mut written = Vec::new();
        for head in heads {
            if !force && now_ms - head.last_checkpoint_ms < self.settings.checkpoint_every_ms {
                continue;
            }
            // Re-read inside the batch: another writer may have moved the head.
            let mut work = load_work(batch.as_mut(), &head.tenant_id)?;
            let cp = work.checkpoint(&self.signer, &head.tenant_id, now_ms)?;
            batch.put_checkpoint(&cp)?;
            batch.set_head(&work.head)?;
            written.push((head.tenant_id.clone(), work.head.size));
        }
        batch.commit()?;
        Ok(written)
    }
}

fn no_subject_key() -> LedgerError {
    LedgerError::Inconsistent(
        "the writer has no subject-index key (keys/subject-index.key); open the data directory \
         with `open_writer`"
            .to_owned(),
    )
}

/// What the sequencing thread asks of the store thread.
enum StoreCmd {
    Subject(
        [u8; 32],
        mpsc::SyncSender<Result<Vec<SubjectEntry>, StoreError>>,
    ),
    Erase(
        String,
        Vec<u64>,
        mpsc::SyncSender<Result<Vec<Erasure>, StoreError>>,
    ),
    /// Outside any batch: purge erased bytes from the store's files.
    Purge(
        std::time::Duration,
        mpsc::SyncSender<Result<Purge, StoreError>>,
    ),
    Head(
        String,
        mpsc::SyncSender<Result<Option<ChainHead>, StoreError>>,
    ),
    /// Opens the next batch now (answered once it is open: on a shared database, once this
    /// writer holds the database's writer lock).
    Begin(mpsc::SyncSender<Result<(), StoreError>>),
    Append(String, Vec<NewEntry>),
    Nodes(String, Vec<(u64, Hash)>),
    SetHead(ChainHead),
    Checkpoint(StoredCheckpoint),
    /// Witnesses' cosignature lines for a stored checkpoint (tenant, size, note).
    Signatures(String, u64, String),
    /// A meta key set in the batch.
    Meta(String, String),
    Archive(StoredAnchor),
    Segment(ArchiveSegment),
    Forget(String, Vec<u64>),
    Commit(Done, CommitHow),
    /// The sequencing side saw a failed commit and reset its chain state: what follows starts
    /// afresh.
    Resume,
}

/// A batch's journal record: its payload, its number, and the flag a failed store commit of it
/// raises.
type JournalRecord = (Vec<u8>, u64, Arc<AtomicBool>);

/// How a batch is committed.
#[derive(Debug, Clone, Copy, Default)]
struct CommitHow {
    /// The batch's commit journal record, if it has one (the store thread records it as
    /// committed once the commit returns).
    journal: Option<u64>,
    /// The batch is durable in the commit journal (once its record's write returns), which has
    /// room for more records: the store thread may keep its transaction open for the batches
    /// that follow within [`MERGE_WINDOW`] and commit them all at once (see [`store_worker`]).
    merge: bool,
}

/// How long the store thread keeps a journalled batch's transaction open for the batches that
/// follow (one commit, one fsync, for all of them; each was durable in the commit journal
/// already). A plain batch, a synchronous commit or anything but appending ends it at once.
const MERGE_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

/// Most journalled batches merged into one store commit.
const MERGE_MOST: usize = 256;

/// Whether a command may join a transaction kept open for merged journalled batches: the
/// appending commands of a next batch. Anything else (reads, erasures, retention, a purge, a
/// resume) commits the merged batches first.
fn mergeable(cmd: &StoreCmd) -> bool {
    matches!(
        cmd,
        StoreCmd::Begin(_)
            | StoreCmd::Append(..)
            | StoreCmd::Nodes(..)
            | StoreCmd::SetHead(_)
            | StoreCmd::Checkpoint(_)
            | StoreCmd::Signatures(..)
            | StoreCmd::Meta(..)
            | StoreCmd::Commit(..)
    )
}

/// Who hears of a commit's result.
enum Done {
    /// [`AppendSink::commit`] waits for it.
    Wait(mpsc::SyncSender<Result<(), StoreError>>),
    /// [`AppendSink::commit_then`]: called on the store thread.
    Call(Box<dyn FnOnce(Result<(), StoreError>) + Send>),
}

impl Done {
    fn send(self, r: Result<(), StoreError>) {
        match self {
            Self::Wait(tx) => {
                let _ = tx.send(r);
            }
            Self::Call(f) => f(r),
        }
    }
}

fn earlier_failed() -> StoreError {
    StoreError::Invalid {
        what: "an earlier batch failed to commit; this one was sequenced after it and was rolled back too".to_owned(),
    }
}

/// After a failed commit the store thread refuses everything the sequencing side sent before it
/// learnt of the failure (batches sequenced on top of the rolled-back one), up to its `Resume`.
fn refuse(cmd: StoreCmd, spent: &mpsc::Sender<Vec<NewEntry>>) {
    match cmd {
        StoreCmd::Commit(done, _) => done.send(Err(earlier_failed())),
        StoreCmd::Subject(_, r) => {
            let _ = r.send(Err(earlier_failed()));
        }
        StoreCmd::Erase(_, _, r) => {
            let _ = r.send(Err(earlier_failed()));
        }
        StoreCmd::Purge(_, r) => {
            let _ = r.send(Err(earlier_failed()));
        }
        StoreCmd::Head(_, r) => {
            let _ = r.send(Err(earlier_failed()));
        }
        StoreCmd::Begin(r) => {
            let _ = r.send(Err(earlier_failed()));
        }
        StoreCmd::Append(_, entries) => {
            let _ = spent.send(entries);
        }
        StoreCmd::Nodes(..)
        | StoreCmd::SetHead(_)
        | StoreCmd::Checkpoint(_)
        | StoreCmd::Signatures(..)
        | StoreCmd::Meta(..)
        | StoreCmd::Archive(_)
        | StoreCmd::Segment(_)
        | StoreCmd::Forget(..)
        | StoreCmd::Resume => {}
    }
}

/// Applies commands batch by batch. After a failure the rest of the batch is skipped and the
/// error answers its `Commit`; the batch is dropped (rolled back), `failed` is raised, and every
/// command up to the sequencing side's `Resume` is refused. Returns when the sequencing side
/// hangs up; a batch open at that moment is rolled back.
fn store_worker(
    store: &mut dyn Store,
    rx: &mpsc::Receiver<StoreCmd>,
    spent: &mpsc::Sender<Vec<NewEntry>>,
    failed_flag: &AtomicBool,
    journal: Option<&std::sync::atomic::AtomicU64>,
) {
    let mut poisoned = false;
    // A command that ended a merge, to run first in a batch of its own.
    let mut carried: Option<StoreCmd> = None;
    while let Some(first) = carried.take().or_else(|| rx.recv().ok()) {
        let first = match first {
            StoreCmd::Resume => {
                poisoned = false;
                continue;
            }
            other if poisoned => {
                refuse(other, spent);
                continue;
            }
            StoreCmd::Purge(wait, reply) => {
                let _ = reply.send(store.erasure_mut().and_then(|s| s.purge_erased(wait)));
                continue;
            }
            other => other,
        };
        let mut failed: Option<StoreError> = None;
        let mut batch = match store.begin() {
            Ok(b) => Some(b),
            Err(e) => {
                failed = Some(e);
                None
            }
        };
        let mut cmd = first;
        // Journalled batches whose commit waits for the batches that follow (see
        // [`MERGE_WINDOW`]), and until when.
        let mut merged: Vec<(Done, Option<u64>)> = Vec::new();
        let mut until: Option<std::time::Instant> = None;
        // The last command was a merged batch's `Commit`: the next batch has not begun (a
        // transaction is only ever committed between batches, never within one).
        let mut boundary = false;
        loop {
            if !matches!(cmd, StoreCmd::Commit(..)) {
                boundary = false;
            }
            match cmd {
                StoreCmd::Commit(done, how)
                    if how.merge
                        && failed.is_none()
                        && batch.is_some()
                        && merged.len() + 1 < MERGE_MOST
                        && until.is_none_or(|t| std::time::Instant::now() < t) =>
                {
                    merged.push((done, how.journal));
                    until.get_or_insert_with(|| std::time::Instant::now() + MERGE_WINDOW);
                    boundary = true;
                }
                StoreCmd::Commit(done, how) => {
                    merged.push((done, how.journal));
                    poisoned |=
                        commit_merged(&mut failed, &mut batch, merged, journal, failed_flag);
                    break;
                }
                // Inside a batch only after a failure the sequencing side saw before this
                // store thread reported it: nothing to undo.
                StoreCmd::Resume => {}
                StoreCmd::Subject(key, reply) => {
                    let r = within(&failed, batch.as_mut(), |b| {
                        b.erasure()?.subject_entries(&key)
                    });
                    let _ = reply.send(r);
                }
                StoreCmd::Erase(tenant, seqs, reply) => {
                    let r = within(&failed, batch.as_mut(), |b| {
                        b.erasure()?.erase_personal(&tenant, &seqs)
                    });
                    if let Err(e) = &r
                        && failed.is_none()
                    {
                        failed = Some(StoreError::Invalid {
                            what: format!("erasing personal data failed: {e}"),
                        });
                    }
                    let _ = reply.send(r);
                }
                StoreCmd::Purge(_, reply) => {
                    let _ = reply.send(Err(StoreError::Invalid {
                        what: "erased data can only be purged between batches".to_owned(),
                    }));
                }
                StoreCmd::Begin(reply) => {
                    let _ = reply.send(match (&failed, &batch) {
                        (None, Some(_)) => Ok(()),
                        (Some(e), _) => Err(StoreError::Invalid {
                            what: format!("the batch could not be opened: {e}"),
                        }),
                        (None, None) => Err(StoreError::Invalid {
                            what: "no open batch".to_owned(),
                        }),
                    });
                }
                StoreCmd::Head(tenant, reply) => {
                    let r = match (&failed, batch.as_mut()) {
                        (None, Some(b)) => b.chain_head(&tenant),
                        (Some(e), _) => Err(StoreError::Invalid {
                            what: format!("an earlier write of this batch failed: {e}"),
                        }),
                        (None, None) => Err(StoreError::Invalid {
                            what: "no open batch".to_owned(),
                        }),
                    };
                    let _ = reply.send(r);
                }
                StoreCmd::Append(t, entries) => {
                    apply(&mut failed, batch.as_mut(), |b| b.append(&t, &entries));
                    // Hand the entries back to be freed where they were allocated: memory freed
                    // on another thread is returned to the OS and faulted in again (measured:
                    // ~10% of an append's CPU zeroing pages).
                    let _ = spent.send(entries);
                }
                StoreCmd::Nodes(t, nodes) => apply(&mut failed, batch.as_mut(), |b| {
                    b.put_nodes(&t, NODE_LEVEL, &nodes)
                }),
                StoreCmd::SetHead(h) => apply(&mut failed, batch.as_mut(), |b| b.set_head(&h)),
                StoreCmd::Checkpoint(cp) => {
                    apply(&mut failed, batch.as_mut(), |b| b.put_checkpoint(&cp))
                }
                StoreCmd::Signatures(t, size, note) => {
                    apply(&mut failed, batch.as_mut(), |b| {
                        match b.add_signatures(&t, size, &note) {
                            // A checkpoint no longer stored (archived since) or another text:
                            // nothing written, and no reason to undo the group around it.
                            Ok(_) | Err(StoreError::Invalid { .. }) => Ok(()),
                            Err(e) => Err(e),
                        }
                    });
                }
                StoreCmd::Meta(k, v) => apply(&mut failed, batch.as_mut(), |b| b.set_meta(&k, &v)),
                StoreCmd::Archive(a) => apply(&mut failed, batch.as_mut(), |b| {
                    b.retention()?.archive_prefix(&a)
                }),
                StoreCmd::Segment(s) => apply(&mut failed, batch.as_mut(), |b| {
                    b.retention()?.put_archive_segment(&s)
                }),
                StoreCmd::Forget(t, seqs) => apply(&mut failed, batch.as_mut(), |b| {
                    b.erasure()?.forget_subjects(&t, &seqs)
                }),
            }
            // Between batches with merged ones waiting (`boundary` implies `until`): the next
            // batch joins them, or they commit when the window closes, when the sequencing side
            // hangs up, or before a command that must not join them.
            let hung_up = match until.filter(|_| boundary) {
                None => match rx.recv() {
                    Ok(next) => {
                        cmd = next;
                        continue;
                    }
                    Err(_) => {
                        // Hung up in the middle of a batch: it is rolled back, and the merged
                        // batches with it (durable in the commit journal: the next writing
                        // open appends them).
                        if !merged.is_empty() {
                            failed.get_or_insert_with(|| StoreError::Invalid {
                                what: "the writer stopped in the middle of a batch".to_owned(),
                            });
                            commit_merged(&mut failed, &mut batch, merged, journal, failed_flag);
                        }
                        return;
                    }
                },
                Some(t) => {
                    match rx.recv_timeout(t.saturating_duration_since(std::time::Instant::now())) {
                        Ok(next) if mergeable(&next) => {
                            cmd = next;
                            continue;
                        }
                        Ok(next) => {
                            carried = Some(next);
                            false
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => false,
                        Err(mpsc::RecvTimeoutError::Disconnected) => true,
                    }
                }
            };
            poisoned |= commit_merged(&mut failed, &mut batch, merged, journal, failed_flag);
            if hung_up {
                return;
            }
            break;
        }
    }
}

/// Commits the open batch (or reports why it cannot) and tells each of its merged batches how
/// it went, the last journalled one recorded as committed. Returns whether it failed (the store
/// thread then refuses what follows up to the sequencing side's `Resume`).
fn commit_merged<'b>(
    failed: &mut Option<StoreError>,
    batch: &mut Option<Box<dyn WriteBatch + 'b>>,
    merged: Vec<(Done, Option<u64>)>,
    journal: Option<&std::sync::atomic::AtomicU64>,
    failed_flag: &AtomicBool,
) -> bool {
    let result = match (failed.take(), batch.take()) {
        (Some(e), _) => Err(e),
        (None, Some(b)) => b.commit(),
        (None, None) => Err(StoreError::Invalid {
            what: "no open batch".to_owned(),
        }),
    };
    let bad = result.is_err();
    if bad {
        // Raised before anyone hears of the failure, so the sequencing side finds it set when
        // it learns.
        failed_flag.store(true, Ordering::Release);
    } else if let (Some(committed), Some(n)) =
        (journal, merged.iter().filter_map(|(_, n)| *n).max())
    {
        committed.fetch_max(n, Ordering::AcqRel);
    }
    let why = result.as_ref().err().map(ToString::to_string);
    let n = merged.len();
    for (i, (done, _)) in merged.into_iter().enumerate() {
        match (&why, i + 1 == n) {
            (None, _) => done.send(Ok(())),
            // The last batch hears the store's own error; the ones merged before it, what it
            // said.
            (Some(_), true) => {
                done.send(result);
                break;
            }
            (Some(w), false) => done.send(Err(StoreError::Invalid {
                what: format!("the commit of merged journalled batches failed: {w}"),
            })),
        }
    }
    bad
}

/// Runs a read or write that answers with a value inside the open batch.
fn within<'b, T>(
    failed: &Option<StoreError>,
    batch: Option<&mut Box<dyn WriteBatch + 'b>>,
    f: impl FnOnce(&mut dyn WriteBatch) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match (failed, batch) {
        (None, Some(b)) => f(b.as_mut()),
        (Some(e), _) => Err(StoreError::Invalid {
            what: format!("an earlier write of this batch failed: {e}"),
        }),
        (None, None) => Err(StoreError::Invalid {
            what: "no open batch".to_owned(),
        }),
    }
}

fn apply<'b>(
    failed: &mut Option<StoreError>,
    batch: Option<&mut Box<dyn WriteBatch + 'b>>,
    f: impl FnOnce(&mut dyn WriteBatch) -> Result<(), StoreError>,
) {
    if failed.is_some() {
        return;
    }
    if let Some(b) = batch
        && let Err(e) = f(b.as_mut())
    {
        *failed = Some(e);
    }
}

/// The sequencing side of [`Writer::stream`]: assigns seq, entry id and links, signs, and hands
/// the store writes to the store thread.
pub struct AppendSink<'w> {
    writer: &'w mut Writer,
    tx: mpsc::SyncSender<StoreCmd>,
    /// Entries the store thread has written, returned to be freed on this thread.
    spent: mpsc::Receiver<Vec<NewEntry>>,
    /// Raised by the store thread when a commit failed.
    failed: Arc<AtomicBool>,
    key_id: KeyId,
    key: HmacKey,
    /// When a forward-secure key must move to its next epoch (writer's clock, Unix ms).
    evolve_at: Option<i64>,
    chains: BTreeMap<String, ChainWork>,
    checkpoints: Vec<StoredCheckpoint>,
    outcome: BatchOutcome,
    /// Entries of the open batch went to the store thread already (it can no longer be
    /// journalled: the journal is written from the entries staged at the commit).
    flushed: bool,
    /// The open batch holds writes other than entries, heads, nodes and checkpoints (it is
    /// not journalled).
    unjournalled: bool,
    /// Batches handed over with [`Self::commit_then`] (not journalled) whose commit has not
    /// returned: a batch is journalled only on top of what is committed or journalled, so that
    /// the journal alone can restore everything it depends on.
    plain_in_flight: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for AppendSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendSink")
            .field("key_id", &self.key_id)
            .field("pending", &self.outcome.count)
            .finish_non_exhaustive()
    }
}

/// The keyed hashes of an event's data-subject ids.
fn subject_keys(key: Option<&HmacKey>, ids: &[String]) -> Result<Vec<[u8; 32]>, LedgerError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let key = key.ok_or_else(no_subject_key)?;
    Ok(ids
        .iter()
        .map(|id| blackbox_core::erasure::subject_index_key(key, id))
        .collect())
}

fn gone() -> LedgerError {
    LedgerError::Inconsistent("the store thread stopped".to_owned())
}

impl AppendSink<'_> {
    /// Entries added since the last commit.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::try_from(self.outcome.count).unwrap_or(usize::MAX)
    }

    /// Whether nothing was added since the last commit.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.outcome.count == 0
    }

    fn send(&mut self, cmd: StoreCmd) -> Result<(), LedgerError> {
        self.check_failed()?;
        self.tx.send(cmd).map_err(|_| gone())
    }

    /// When a commit failed since this sink last looked (one handed over with
    /// [`Self::commit_then`]): forgets the chain state sequenced on top of it, lets the store
    /// thread resume, and reports the failure. The next call starts from the store's heads.
    fn check_failed(&mut self) -> Result<(), LedgerError> {
        if self.failed.load(Ordering::Acquire) {
            self.reset();
            return Err(earlier_failed().into());
        }
        if let Some(j) = &self.writer.journal
            && j.unapplied()
        {
            // Entries answered as durable are in the journal, not in the store: nothing may be
            // sequenced on the store's heads before they are appended.
            return Err(LedgerError::Inconsistent(format!(
                "a journalled batch's store commit failed; its entries (durable in {}) are \
                 appended before anything else (Writer::recover_journal)",
                j.path().display()
            )));
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.failed.store(false, Ordering::Release);
        self.chains.clear();
        self.checkpoints.clear();
        self.outcome = BatchOutcome::default();
        self.flushed = false;
        self.unjournalled = false;
        let _ = self.tx.send(StoreCmd::Resume);
    }

    /// Loads a chain's head so that [`Self::heartbeat`] and [`Self::close`] cover it even if no
    /// entry is added to it (a service tracks every chain from its start).
    ///
    /// # Errors
    /// Store failures.
    pub fn track(&mut self, tenant: &str) -> Result<(), LedgerError> {
        self.load(tenant)
    }

    /// Whether this sink's head of `head.tenant_id`'s chain differs from `head` as stored (size
    /// or latest checkpoint): another writer sharing the store moved it. Untracked chains are
    /// not stale.
    #[must_use]
    pub fn is_stale(&self, head: &ChainHead) -> bool {
        self.chains.get(&head.tenant_id).is_some_and(|w| {
            w.head.size != head.size
                || w.head.last_checkpoint_ms != head.last_checkpoint_ms
                || w.head.last_checkpoint_size != head.last_checkpoint_size
        })
    }

    /// Opens the next batch now rather than with its first write: on a store several writers
    /// share (PostgreSQL), this writer then holds the database's writer lock until the batch's
    /// commit, so what it sequences meanwhile cannot meet another writer's entries.
    ///
    /// # Errors
    /// The batch cannot be opened (the lock not had within the store's lock timeout, the store
    /// unreachable).
    pub fn begin_batch(&mut self) -> Result<(), LedgerError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.send(StoreCmd::Begin(reply_tx))?;
        reply_rx.recv().map_err(|_| gone())??;
        Ok(())
    }

    /// Reads a chain's head from the store again: another writer sharing the store (a service
    /// instance on the same PostgreSQL database) committed entries to it. Only between batches:
    /// refused while entries of this sink wait for their commit on that chain.
    ///
    /// # Errors
    /// [`LedgerError::Inconsistent`] while entries of the chain are staged; store failures.
    pub fn reload(&mut self, tenant: &str) -> Result<(), LedgerError> {
        if let Some(work) = self.chains.get(tenant) {
            if work.dirty || !work.entries.is_empty() {
                return Err(LedgerError::Inconsistent(format!(
                    "cannot re-read the chain of {tenant:?} while entries of it wait for their commit"
                )));
            }
            self.chains.remove(tenant);
        }
        self.load(tenant)
    }

    fn load(&mut self, tenant: &str) -> Result<(), LedgerError> {
        if self.chains.contains_key(tenant) {
            return Ok(());
        }
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.send(StoreCmd::Head(tenant.to_owned(), reply_tx))?;
        let head = reply_rx.recv().map_err(|_| gone())??;
        let work = chain_work(tenant, head)?;
        self.chains.insert(tenant.to_owned(), work);
        Ok(())
    }

    fn flush(&mut self, tenant: &str) -> Result<(), LedgerError> {
        // Written entries are freed here; one of their vectors takes the next entries (a fresh
        // one would grow, and fault in new pages, a dozen times per flush).
        let mut recycled: Option<Vec<NewEntry>> = None;
        while let Ok(mut done) = self.spent.try_recv() {
            done.clear();
            recycled = Some(done);
        }
        let Some(work) = self.chains.get_mut(tenant) else {
            return Ok(());
        };
        let next = recycled.unwrap_or_else(|| Vec::with_capacity(FLUSH_EVERY));
        let entries = std::mem::replace(&mut work.entries, next);
        let nodes = std::mem::take(&mut work.nodes);
        if !entries.is_empty() {
            self.flushed = true;
            self.send(StoreCmd::Append(tenant.to_owned(), entries))?;
        }
        if !nodes.is_empty() {
            self.send(StoreCmd::Nodes(tenant.to_owned(), nodes))?;
        }
        Ok(())
    }

    /// Sequences, signs and stages one event (durable only after [`Self::commit`]).
    ///
    /// # Errors
    /// Store and signing failures.
    pub fn add(&mut self, ev: &NormalizedEvent, now_ms: i64) -> Result<Appended, LedgerError> {
        self.check_failed()?;
        // Borrowed from the event (no copy per entry); the default tenant only when it names none.
        let default_tenant;
        let tenant: &TenantId = match &ev.tenant_id {
            Some(t) => t,
            None => {
                default_tenant = self.writer.settings.default_tenant.clone();
                &default_tenant
            }
        };
        if self.evolve_at.is_some_and(|t| now_ms >= t) {
            if self.writer.evolve(now_ms)? {
                // The old epoch's key is dropped (zeroed) as it is replaced.
                (self.key_id, self.key) = self.writer.current_key()?;
            }
            self.evolve_at = self.writer.keys.next_epoch_at_ms();
        }
        self.load(tenant.as_str())?;
        let Some(work) = self.chains.get_mut(tenant.as_str()) else {
            return Err(LedgerError::Inconsistent("chain state vanished".to_owned()));
        };
        let seq = work.head.size + 1;
        let now_u = u64::try_from(now_ms).unwrap_or(0);
        let entry_id = next_entry_id(work.last_id, now_u, self.writer.random.take::<10>()?);
        let sidecar = match &ev.personal {
            Some(fields) => Some(
                make_sidecar(fields, self.writer.random.take::<32>()?)
                    .map_err(|e| LedgerError::Inconsistent(e.to_string()))?,
            ),
            None => None,
        };
        if ev.origin.is_none() {
            return Err(LedgerError::Inconsistent(
                "an event without an origin would be sealed in format version 1; every entry \
                 the writer seals names who supplied it"
                    .to_owned(),
            ));
        }
        let written = blackbox_core::entry::written_ms(entry_id.as_u128());
        let clock_skew_ms = ev
            .timestamp_ms
            .and_then(|c| self.writer.settings.clock.skew(c, written));
        let ts_ms = ev.timestamp_ms.unwrap_or(written);
        let sealed = seal(
            ev,
            &SealParams {
                tenant_id: tenant,
                seq,
                entry_id,
                timestamp_ms: ts_ms,
                key_id: &self.key_id,
                key: &self.key,
                prev_entry_hash: work.head.head_hash,
                personal_digest: sidecar.as_ref().map(|s| s.digest),
                clock_skew_ms,
            },
        )
        .map_err(|e| LedgerError::Inconsistent(e.to_string()))?;
        let entry = NewEntry {
            seq,
            entry_id: *entry_id.as_bytes(),
            ts_ms,
            agent_id: ev.agent_id.as_str().to_owned(),
            session_id: ev.session_id.as_str().to_owned(),
            event_type: ev.event_type.as_str().to_owned(),
            tool: ev.tool.clone(),
            line: sealed.line,
            entry_hash: sealed.entry_hash,
            personal: match sidecar {
                Some(s) => Some(PersonalRecord {
                    sidecar: s.bytes,
                    subject_keys: subject_keys(self.writer.subject_key.as_ref(), &ev.subject_ids)?,
                }),
                None => None,
            },
        };
        self.stage(tenant.as_str(), entry, now_ms)?;
        Ok(Appended {
            seq,
            entry_id,
            entry_hash: sealed.entry_hash,
        })
    }

    /// Stages an entry sealed for `tenant`'s next seq: the Merkle tree, the head, a checkpoint
    /// due by count, the outcome.
    fn stage(&mut self, tenant: &str, entry: NewEntry, now_ms: i64) -> Result<(), LedgerError> {
        let Some(work) = self.chains.get_mut(tenant) else {
            return Err(LedgerError::Inconsistent("chain state vanished".to_owned()));
        };
        let seq = entry.seq;
        let nodes = &mut work.nodes;
        work.tree
            .push(leaf_hash(entry.entry_hash.as_bytes()), |level, idx, h| {
                if level == NODE_LEVEL {
                    nodes.push((idx, *h));
                }
            });
        work.head.size = seq;
        work.head.head_hash = entry.entry_hash;
        work.head.last_entry_id = entry.entry_id;
        work.last_id = Some(uuid::Uuid::from_bytes(entry.entry_id));
        work.dirty = true;
        work.entries.push(entry);
        if seq.is_multiple_of(self.writer.settings.checkpoint_every_entries) {
            self.checkpoints
                .push(work.checkpoint(&self.writer.signer, tenant, now_ms)?);
        }
        if work.entries.len() >= FLUSH_EVERY {
            self.flush(tenant)?;
        }
        self.outcome.count += 1;
        match self.outcome.chains.get_mut(tenant) {
            Some(range) => range.1 = seq,
            None => {
                self.outcome.chains.insert(tenant.to_owned(), (seq, seq));
            }
        }
        Ok(())
    }

    /// Stages an entry sealed earlier (a commit journal's, [`Writer::recover_journal`]): it
    /// must be the chain's next, linked to its head.
    fn add_signed(
        &mut self,
        tenant: &str,
        entry: NewEntry,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        self.check_failed()?;
        self.load(tenant)?;
        let Some(work) = self.chains.get(tenant) else {
            return Err(LedgerError::Inconsistent("chain state vanished".to_owned()));
        };
        if entry.seq != work.head.size + 1 {
            return Err(LedgerError::Inconsistent(format!(
                "its entry {} of chain {tenant:?} is not the next (the store's head is at {})",
                entry.seq, work.head.size
            )));
        }
        let view = blackbox_core::entry::EntryView::parse(&entry.line)
            .map_err(|e| LedgerError::Inconsistent(e.to_string()))?;
        if view.prev_entry_hash != work.head.head_hash {
            return Err(LedgerError::Inconsistent(format!(
                "its entry {} of chain {tenant:?} does not link to the store's head",
                entry.seq
            )));
        }
        self.stage(tenant, entry, now_ms)
    }

    /// Stages the removal of a chain's archived entries and records where its stored entries
    /// now begin (see [`blackbox_store::RetentionBatch::archive_prefix`]); it takes effect with the
    /// next [`Self::commit`], together with whatever else the batch holds.
    ///
    /// # Errors
    /// The store thread stopped.
    pub fn archive_prefix(&mut self, anchor: StoredAnchor) -> Result<(), LedgerError> {
        self.unjournalled = true;
        self.send(StoreCmd::Archive(anchor))
    }

    /// Stages the removal of subject-index rows of `tenant`'s entries `seqs` (with the next
    /// [`Self::commit`]): their personal data was erased from the archive.
    ///
    /// # Errors
    /// The store thread stopped.
    pub fn forget_subjects(&mut self, tenant: &str, seqs: Vec<u64>) -> Result<(), LedgerError> {
        self.unjournalled = true;
        self.send(StoreCmd::Forget(tenant.to_owned(), seqs))
    }

    /// Stages witnesses' cosignature lines for `tenant`'s stored checkpoint at `size` (with the
    /// next [`Self::commit`]); `note` is that checkpoint's note with the lines added. The caller
    /// verifies the cosignatures first. A note no stored checkpoint has is skipped (see
    /// [`blackbox_store::WriteBatch::add_signatures`]) without failing the batch.
    ///
    /// # Errors
    /// The store thread stopped.
    pub fn add_signatures(
        &mut self,
        tenant: &str,
        size: u64,
        note: String,
    ) -> Result<(), LedgerError> {
        self.unjournalled = true;
        self.send(StoreCmd::Signatures(tenant.to_owned(), size, note))
    }

    /// Stages the record of an archive segment (with the next [`Self::commit`]).
    ///
    /// # Errors
    /// The store thread stopped.
    pub fn put_archive_segment(&mut self, segment: ArchiveSegment) -> Result<(), LedgerError> {
        self.unjournalled = true;
        self.send(StoreCmd::Segment(segment))
    }

    /// The entries the subject index lists for a data subject (by its keyed hash), read in the
    /// current batch.
    ///
    /// # Errors
    /// Store failures.
    pub fn subject_entries(&mut self, key: [u8; 32]) -> Result<Vec<SubjectEntry>, LedgerError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.unjournalled = true;
        self.send(StoreCmd::Subject(key, reply_tx))?;
        Ok(reply_rx.recv().map_err(|_| gone())??)
    }

    /// Deletes the personal sidecars of `tenant`'s entries `seqs` in the current batch (durable,
    /// like everything else, with [`Self::commit`]). A failure poisons the batch.
    ///
    /// # Errors
    /// Store failures.
    pub fn erase_personal(
        &mut self,
        tenant: &str,
        seqs: Vec<u64>,
    ) -> Result<Vec<Erasure>, LedgerError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.unjournalled = true;
        self.send(StoreCmd::Erase(tenant.to_owned(), seqs, reply_tx))?;
        Ok(reply_rx.recv().map_err(|_| gone())??)
    }

    /// Between batches: makes the store purge erased bytes from its files (see
    /// [`blackbox_store::ErasureStore::purge_erased`]), waiting up to `wait` for readers.
    ///
    /// # Errors
    /// [`StoreError::PurgeIncomplete`] and other store failures.
    pub fn purge_erased(&mut self, wait: std::time::Duration) -> Result<Purge, LedgerError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.send(StoreCmd::Purge(wait, reply_tx))?;
        Ok(reply_rx.recv().map_err(|_| gone())??)
    }

    /// The writer (for its subject-index key).
    #[must_use]
    pub fn writer(&self) -> &Writer {
        self.writer
    }

    /// The writer's clock read now, Unix ms.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.writer.now_ms()
    }

    /// Signs a heartbeat checkpoint (unchanged size, newer timestamp) for every chain this
    /// stream has touched whose last checkpoint is older than the checkpoint interval, and
    /// commits. A log that went quiet thereby still proves, to anyone with the public key, that
    /// it was alive and had exactly this many entries. Returns how many were signed.
    ///
    /// # Errors
    /// Store and signing failures.
    pub fn heartbeat(&mut self, now_ms: i64) -> Result<usize, LedgerError> {
        let every = self.writer.settings.checkpoint_every_ms;
        let mut signed = 0;
        for (tenant, work) in &mut self.chains {
            if now_ms - work.head.last_checkpoint_ms < every {
                continue;
            }
            self.checkpoints
                .push(work.checkpoint(&self.writer.signer, tenant, now_ms)?);
            work.dirty = true;
            signed += 1;
        }
        if signed > 0 {
            self.commit(now_ms, false)?;
        }
        Ok(signed)
    }

    /// Signs a closing checkpoint for every chain this stream has touched whose latest
    /// checkpoint does not cover its last entry, and commits: what a service does when it shuts
    /// down, so that every entry it wrote is covered by a signed checkpoint. Returns how many
    /// were signed.
    ///
    /// # Errors
    /// Store and signing failures.
    pub fn close(&mut self, now_ms: i64) -> Result<usize, LedgerError> {
        let mut signed = 0;
        for (tenant, work) in &mut self.chains {
            if work.head.last_checkpoint_size == work.head.size {
                continue;
            }
            self.checkpoints
                .push(work.checkpoint(&self.writer.signer, tenant, now_ms)?);
            work.dirty = true;
            signed += 1;
        }
        if signed > 0 || !self.is_empty() {
            self.commit(now_ms, true)?;
        }
        Ok(signed)
    }

    /// Writes heads, Merkle nodes and due checkpoints (a closing one per grown chain when
    /// `close`), and waits until the store has committed them durably. Returns what this batch
    /// appended; the sink is then ready for the next batch.
    ///
    /// # Errors
    /// Store and signing failures; then nothing of this batch is visible.
    pub fn commit(&mut self, now_ms: i64, close: bool) -> Result<BatchOutcome, LedgerError> {
        self.stage_commit(now_ms, close)?;
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.send(StoreCmd::Commit(Done::Wait(reply_tx), CommitHow::default()))?;
        let result = reply_rx.recv().map_err(|_| gone())?;
        if let Err(e) = result {
            // The store rolled back: forget this batch's chain state and outcome.
            self.reset();
            return Err(e.into());
        }
        // The chain state stays valid for the next batch: one writer holds the store.
        Ok(std::mem::take(&mut self.outcome))
    }

    /// Like [`Self::commit`], without waiting: the batch goes to the store thread, which calls
    /// `done` (on its own thread) once it is durable or has failed, and the sink goes on with the
    /// next batch at once, sequenced on top of this one. The returned outcome holds only if
    /// `done` reports success. When a commit fails, the store thread refuses every batch
    /// sequenced after it (their `done` report the failure too) and the sink's next call fails
    /// once and resets to what the store holds. `done` is not called when this returns an error.
    ///
    /// # Errors
    /// Signing failures, a stopped store thread, or an earlier commit that failed.
    pub fn commit_then(
        &mut self,
        now_ms: i64,
        close: bool,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Result<BatchOutcome, LedgerError> {
        self.stage_commit(now_ms, close)?;
        let plain = Arc::clone(&self.plain_in_flight);
        plain.fetch_add(1, Ordering::AcqRel);
        let sent = self.send(StoreCmd::Commit(
            Done::Call(Box::new(move |r| {
                plain.fetch_sub(1, Ordering::AcqRel);
                done(r);
            })),
            CommitHow::default(),
        ));
        if let Err(e) = sent {
            self.plain_in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        Ok(std::mem::take(&mut self.outcome))
    }

    /// Whether the open batch can still be journalled by [`Self::commit_journaled`] (a commit
    /// journal is kept and ready, nothing but entries and checkpoints staged, no entries handed
    /// to the store yet, every batch before it committed or journalled). Its entries may still
    /// keep it out (a personal sidecar, too large).
    #[must_use]
    pub fn can_journal(&self) -> bool {
        self.writer
            .journal
            .as_ref()
            .is_some_and(|j| !j.needs_recovery())
            && !self.flushed
            && !self.unjournalled
            && self.plain_in_flight.load(Ordering::Acquire) == 0
    }

    /// Hands the batch's entries, heads, Merkle nodes and due checkpoints to the store thread.
    fn stage_commit(&mut self, now_ms: i64, close: bool) -> Result<(), LedgerError> {
        self.check_failed()?;
        let tenants: Vec<String> = self.chains.keys().cloned().collect();
        for tenant in &tenants {
            self.flush(tenant)?;
            let Some(work) = self.chains.get_mut(tenant) else {
                continue;
            };
            let due =
                now_ms - work.head.last_checkpoint_ms >= self.writer.settings.checkpoint_every_ms;
            if work.dirty && ((close && work.head.last_checkpoint_size != work.head.size) || due) {
                self.checkpoints
                    .push(work.checkpoint(&self.writer.signer, tenant, now_ms)?);
            }
            if work.dirty {
                work.dirty = false;
                work.head.merkle_state = work.tree.to_bytes();
                let head = work.head.clone();
                self.send(StoreCmd::SetHead(head))?;
            }
        }
        for cp in std::mem::take(&mut self.checkpoints) {
            self.outcome
                .checkpoints
                .push((cp.tenant_id.clone(), cp.size));
            self.send(StoreCmd::Checkpoint(cp))?;
        }
        self.flushed = false;
        self.unjournalled = false;
        Ok(())
    }

    /// Like [`Self::commit_then`], and with a commit journal ([`Writer::with_journal`]) the
    /// batch's entries are also written to it and fsynced, on this thread while the store
    /// commits: once that returns `Some(Ok(()))` the batch is durable (a crash or a failed
    /// store commit leaves it to [`Writer::recover_journal`]), whether or not the store has
    /// committed yet. `None`: not journalled (no journal, a batch of other writes than entries
    /// and checkpoints, a personal sidecar, a batch larger than
    /// [`crate::journal::MAX_RECORD`], entries already handed to the store), so durable only
    /// when `done` reports it. `Some(Err(_))`: the journal could not be written (likewise).
    ///
    /// # Errors
    /// As [`Self::commit_then`].
    pub fn commit_journaled(
        &mut self,
        now_ms: i64,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Result<(BatchOutcome, Option<Result<(), LedgerError>>), LedgerError> {
        self.check_failed()?;
        let Some((payload, n, unapplied)) = self.journal_payload() else {
            return Ok((self.commit_then(now_ms, false, done)?, None));
        };
        let merge = self
            .writer
            .journal
            .as_ref()
            .is_some_and(|j| j.has_room(payload.len()));
        self.stage_commit(now_ms, false)?;
        self.send(StoreCmd::Meta(
            crate::journal::JOURNAL_META.to_owned(),
            n.to_string(),
        ))?;
        self.send(StoreCmd::Commit(
            Done::Call(Box::new(move |r| {
                if r.is_err() {
                    // Its record is applied before anything else is written.
                    unapplied.store(true, Ordering::Release);
                }
                done(r);
            })),
            CommitHow {
                journal: Some(n),
                merge,
            },
        ))?;
        // Written and fsynced while the store commits.
        let written = match &mut self.writer.journal {
            Some(j) => j.write(n, &payload),
            None => Err(LedgerError::Inconsistent("no commit journal".to_owned())),
        };
        Ok((std::mem::take(&mut self.outcome), Some(written)))
    }

    /// The open batch's journal record payload and number, if it can be journalled.
    fn journal_payload(&self) -> Option<JournalRecord> {
        let j = self.writer.journal.as_ref()?;
        if !self.can_journal() || self.outcome.count == 0 {
            return None;
        }
        let mut p = crate::journal::Payload { chains: Vec::new() };
        for (tenant, work) in &self.chains {
            crate::journal::add_chain(&mut p, tenant, &work.entries)?;
        }
        let bytes = serde_json::to_vec(&p).ok()?;
        (bytes.len() <= crate::journal::MAX_RECORD && j.fits(bytes.len())).then(|| {
            let (n, unapplied) = j.next();
            (bytes, n, unapplied)
        })
    }
}
