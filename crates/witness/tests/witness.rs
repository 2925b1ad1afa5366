//! The witness over HTTP, in process: the client against `blackbox witness serve`'s router,
//! concurrent submissions for one origin (the race C2SP tlog-witness warns about), durability
//! across a restart, one witness per state directory, and a client that checks the witness key.

// Tests panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use blackbox_core::Hash;
use blackbox_core::checkpoint::{Checkpoint, SignedCheckpoint};
use blackbox_core::cosignature::Cosigner;
use blackbox_core::merkle::{consistency_proof, leaf_hash, root_from_leaf_hashes};
use blackbox_core::note::NoteSigner;
use blackbox_core::witness::AddCheckpoint;
use blackbox_witness::client::{SubmitError, Witness, add_checkpoint};
use blackbox_witness::serve::{WitnessService, router, router_with};
use blackbox_witness::state::{WitnessState, record_of};

const ORIGIN: &str = "log.test/acme";

fn log() -> NoteSigner {
    NoteSigner::new("log.test", [5; 32]).unwrap()
}

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn request(l: &[Hash], old: u64, new: u64) -> AddCheckpoint {
    let n = usize::try_from(new).unwrap();
    let proof = if old == 0 || old == new {
        Vec::new()
    } else {
        consistency_proof(old, new, |start, level| {
            let a = usize::try_from(start).unwrap();
            Ok::<_, std::convert::Infallible>(root_from_leaf_hashes(&l[a..a + (1 << level)]))
        })
        .unwrap()
    };
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: new,
        root: root_from_leaf_hashes(&l[..n]),
        extensions: vec![],
    };
    AddCheckpoint {
        old_size: old,
        proof,
        checkpoint: SignedCheckpoint::sign(cp, &log()).unwrap(),
    }
}

async fn start(dir: &std::path::Path) -> (String, tokio::task::JoinHandle<()>, Cosigner) {
    let cosigner = Cosigner::new("witness.test/w1", [8; 32]).unwrap();
    let state = WitnessState::open(dir).unwrap();
    let svc = Arc::new(WitnessService::new(
        cosigner.clone(),
        vec![log().verifier()],
        state,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router(svc)).await.unwrap();
    });
    (url, task, cosigner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_never_roll_the_record_back() {
    let dir = tempfile::tempdir().unwrap();
    let (url, task, cosigner) = start(dir.path()).await;
    let http = blackbox_webhooks::dispatch::http_client().unwrap();
    let w = Arc::new(Witness {
        url,
        key: cosigner.key().clone(),
    });
    let l = Arc::new(leaves(64));
    // 40 logs' worth of "first contact" at once, each claiming a different size: exactly one
    // is cosigned, every other one is told the size the witness then holds.
    let mut tasks = Vec::new();
    for size in 1..=40u64 {
        let (http, w, l) = (http.clone(), Arc::clone(&w), Arc::clone(&l));
        tasks.push(tokio::spawn(async move {
            let r = add_checkpoint(&http, &w, &request(&l, 0, size), Duration::from_secs(20)).await;
            (size, r)
        }));
    }
    let mut won = Vec::new();
    let mut told = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (size, Ok(sigs)) => {
                assert_eq!(sigs.len(), 1);
                won.push(size);
            }
            (_, Err(SubmitError::Conflict { size })) => told.push(size),
            (size, Err(e)) => panic!("size {size}: {e}"),
        }
    }
    assert_eq!(
        won.len(),
        1,
        "exactly one first checkpoint is cosigned: {won:?}"
    );
    assert!(told.iter().all(|s| *s == won[0]), "{told:?} vs {won:?}");
    // Then many growths from that size at once: one wins, the record only grows.
    let base = won[0];
    let mut tasks = Vec::new();
    for new in base..=64 {
        let (http, w, l) = (http.clone(), Arc::clone(&w), Arc::clone(&l));
        tasks.push(tokio::spawn(async move {
            add_checkpoint(&http, &w, &request(&l, base, new), Duration::from_secs(20))
                .await
                .is_ok()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert!(ok >= 1);
    let (size, root) = record_of(dir.path(), ORIGIN).unwrap().unwrap();
    assert!(size > base, "a growth was cosigned: {size} > {base}");
    assert_eq!(
        root,
        root_from_leaf_hashes(&l[..usize::try_from(size).unwrap()])
    );
    // A smaller checkpoint, as the log presents it honestly (old = the witness's size): 400.
    if base < size {
        let mut back = request(&l, 0, base);
        back.old_size = size;
        match add_checkpoint(&http, &w, &back, Duration::from_secs(5)).await {
            Err(SubmitError::Refused { status: 400, .. }) => {}
            other => panic!("a rolled-back log must be refused: {other:?}"),
        }
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_and_one_witness_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let l = leaves(10);
    {
        let (url, task, cosigner) = start(dir.path()).await;
        let http = blackbox_webhooks::dispatch::http_client().unwrap();
        let w = Witness {
            url: url.clone(),
            key: cosigner.key().clone(),
        };
        add_checkpoint(&http, &w, &request(&l, 0, 4), Duration::from_secs(5))
            .await
            .unwrap();
        // A second witness process on the same directory is refused.
        let e = WitnessState::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("another witness"), "{e}");
        // A client configured with another key for this witness gets no valid cosignature.
        let wrong = Witness {
            url,
            key: Cosigner::new("witness.test/w1", [9; 32])
                .unwrap()
                .key()
                .clone(),
        };
        match add_checkpoint(&http, &wrong, &request(&l, 4, 6), Duration::from_secs(5)).await {
            Err(SubmitError::BadCosignature { .. }) => {}
            other => panic!("{other:?}"),
        }
        task.abort();
        let _ = task.await;
    }
    // The state thread ends when its last handle goes; give it a moment to drop the lock.
    let mut reopened = None;
    for _ in 0..50 {
        match WitnessState::open(dir.path()) {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    drop(reopened.expect("the state reopens after the witness stopped"));
    // What was cosigned (6, by the wrong-key round: the witness did cosign it) is on disk.
    let (size, root) = record_of(dir.path(), ORIGIN).unwrap().unwrap();
    assert_eq!(size, 6);
    assert_eq!(root, root_from_leaf_hashes(&l[..6]));
}

/// Sends `head` and then `body_part` on a raw connection, and reads the whole answer (to the
/// connection's end, or 5 s).
async fn raw_exchange(addr: std::net::SocketAddr, head: &str, body_part: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body_part).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_oversized_body_is_refused_and_its_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Arc::new(WitnessService::new(
        Cosigner::new("witness.test/w1", [8; 32]).unwrap(),
        vec![log().verifier()],
        WitnessState::open(dir.path()).unwrap(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router_with(svc, Duration::from_millis(300)))
            .await
            .unwrap();
    });
    // A body announced at 100 bytes of which 6 come, then nothing: 408 after the deadline,
    // and the connection is closed (read to its end above).
    let started = std::time::Instant::now();
    let answer = raw_exchange(
        addr,
        "POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 100\r\n\r\n",
        b"old 0\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("not complete after 0.3 s"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // Larger than any add-checkpoint request: 413, with what the limit is.
    let big = vec![b'x'; blackbox_core::witness::MAX_REQUEST_BYTES + 1];
    let head = format!(
        "POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    let answer = raw_exchange(addr, &head, &big).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than"), "{answer}");
    task.abort();
}
