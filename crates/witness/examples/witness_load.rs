//! Load generator for `blackbox witness serve`: submits checkpoints of many logs (origins) at
//! once and reports submissions per second and latency, checking every cosignature it gets.
//!
//! ```text
//! cargo run --release -p blackbox-witness --example witness_load -- \
//!     http://127.0.0.1:7380 <log key file> <witness public key file> <origins> <per origin> <connections> [get]
//! ```
//!
//! The log key file is a signer `<name> <64 hex digits>` (the witness must follow the log
//! `<name>`; origins are `<name>/t<i>`). Each origin gets a first checkpoint (old size 0) and
//! then `per origin - 1` more, each one leaf larger with its consistency proof, all built and
//! signed before the clock starts. A connection submits one origin's checkpoints in order
//! (the protocol needs the previous one cosigned first), origins spread over the connections.
//! With `get` as the last argument it sends `GET /` instead, as many times: the HTTP ceiling of
//! the same machine, for reference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blackbox_core::Hash;
use blackbox_core::checkpoint::{Checkpoint, SignedCheckpoint};
use blackbox_core::cosignature::CosignerKey;
use blackbox_core::merkle::{consistency_proof, leaf_hash, root_from_leaf_hashes};
use blackbox_core::note::NoteSigner;
use blackbox_core::witness::AddCheckpoint;
use blackbox_witness::client::{Witness, add_checkpoint};

fn usage() -> ! {
    eprintln!(
        "usage: witness_load URL LOG_KEY_FILE WITNESS_PUB ORIGINS PER_ORIGIN CONNECTIONS [get]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        usage();
    }
    let url = args[1].clone();
    let key_text = std::fs::read_to_string(&args[2]).unwrap_or_else(|_| usage());
    let line = key_text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap_or_else(|| usage());
    let (name, seed_hex) = line.trim().split_once(' ').unwrap_or_else(|| usage());
    let seed = Hash::from_hex(seed_hex).unwrap_or_else(|_| usage()).0;
    let signer = NoteSigner::new(name, seed).unwrap_or_else(|_| usage());
    let wkey = CosignerKey::from_vkey(
        std::fs::read_to_string(&args[3])
            .unwrap_or_else(|_| usage())
            .trim(),
    )
    .unwrap_or_else(|_| usage());
    let origins: usize = args[4].parse().unwrap_or_else(|_| usage());
    let per: u64 = args[5].parse().unwrap_or_else(|_| usage());
    let conns: usize = args[6].parse().unwrap_or_else(|_| usage());
    let get_only = args.get(7).is_some_and(|a| a == "get");

    // Every request, built before the clock starts.
    let t0 = Instant::now();
    let mut work: Vec<Vec<AddCheckpoint>> = Vec::with_capacity(origins);
    for o in 0..origins {
        let origin = format!("{name}/t{o}");
        let leaves: Vec<Hash> = (0..per)
            .map(|i| leaf_hash(format!("{origin} {i}").as_bytes()))
            .collect();
        let mut reqs = Vec::new();
        let mut old = 0u64;
        for size in 1..=per {
            let n = usize::try_from(size).unwrap_or(usize::MAX);
            let root = root_from_leaf_hashes(&leaves[..n]);
            let proof = if old == 0 {
                Vec::new()
            } else {
                consistency_proof(old, size, |start, level| {
                    let a = usize::try_from(start).unwrap_or(0);
                    Ok::<_, std::convert::Infallible>(root_from_leaf_hashes(
                        &leaves[a..a + (1usize << level)],
                    ))
                })
                .unwrap_or_default()
            };
            let cp = Checkpoint {
                origin: origin.clone(),
                size,
                root,
                extensions: vec![],
            };
            let Ok(sc) = SignedCheckpoint::sign(cp, &signer) else {
                usage()
            };
            reqs.push(AddCheckpoint {
                old_size: old,
                proof,
                checkpoint: sc,
            });
            old = size;
        }
        work.push(reqs);
    }
    eprintln!(
        "built {} submissions in {:.1} s",
        origins as u64 * per,
        t0.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|_| usage());
    rt.block_on(async move {
        let http = blackbox_webhooks::dispatch::http_client().unwrap_or_else(|_| usage());
        let witness = Arc::new(Witness { url, key: wkey });
        // Origins dealt to connections round-robin.
        let mut lanes: Vec<Vec<Vec<AddCheckpoint>>> = (0..conns).map(|_| Vec::new()).collect();
        for (i, w) in work.into_iter().enumerate() {
            lanes[i % conns].push(w);
        }
        let start = Instant::now();
        let mut tasks = Vec::new();
        for lane in lanes {
            let http = http.clone();
            let witness = Arc::clone(&witness);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut failed = 0u64;
                for reqs in lane {
                    for r in reqs {
                        let t = Instant::now();
                        let ok = if get_only {
                            let req = hyper::Request::get(format!("{}/", witness.url))
                                .body(http_body_util::Full::new(bytes::Bytes::new()))
                                .ok();
                            match req {
                                Some(req) => match http.request(req).await {
                                    Ok(resp) => {
                                        let ok = resp.status().is_success();
                                        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                                        ok
                                    }
                                    Err(_) => false,
                                },
                                None => false,
                            }
                        } else {
                            add_checkpoint(&http, &witness, &r, Duration::from_secs(30))
                                .await
                                .is_ok_and(|sigs| !sigs.is_empty())
                        };
                        lat.push(t.elapsed());
                        if !ok {
                            failed += 1;
                        }
                    }
                }
                (lat, failed)
            }));
        }
        let mut lat = Vec::new();
        let mut failed = 0;
        for t in tasks {
            if let Ok((l, f)) = t.await {
                lat.extend(l);
                failed += f;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        lat.sort_unstable();
        let pct = |p: f64| {
            let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
            lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "{} {}: {} requests in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms; failed {}",
            if get_only { "GET /" } else { "add-checkpoint" },
            format_args!("({origins} origins x {per}, {conns} connections)"),
            lat.len(),
            secs,
            lat.len() as f64 / secs,
            pct(0.5),
            pct(0.99),
            failed
        );
        if failed > 0 {
            std::process::exit(1);
        }
    });
}
