//! The C2SP tlog-witness protocol (<https://c2sp.org/tlog-witness>): the `add-checkpoint`
//! request body and the checks a witness makes before it cosigns.
//!
//! ```text
//! old <size of the checkpoint the witness last cosigned for this origin, or 0>
//! <consistency proof hashes, base64, one per line, at most 63>
//! <empty line>
//! <the signed checkpoint note>
//! ```
//!
//! [`check_add_checkpoint`] is the witness's decision, pure: given the log keys it trusts for the
//! origin and what it last cosigned there, it accepts (and returns the record to keep) or refuses
//! with the HTTP status the specification prescribes. The caller must check and update its record
//! atomically.

use crate::checkpoint::SignedCheckpoint;
use crate::hash::Hash;
use crate::merkle;
use crate::note::NoteVerifier;

/// The most consistency-proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;
/// The largest request body a witness reads (a checkpoint with many signatures fits easily).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// `Content-Type` of a 409 response's body (the witness's latest size).
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A parsed `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the previous checkpoint the witness is believed to hold.
    pub old_size: u64,
    /// The RFC 6962 consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub checkpoint: SignedCheckpoint,
}

/// Why an `add-checkpoint` request body cannot be read (the witness answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("add-checkpoint request: {reason}")]
pub struct RequestError {
    /// What is wrong.
    pub reason: String,
}

fn bad(reason: impl Into<String>) -> RequestError {
    RequestError {
        reason: reason.into(),
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if ok { s.parse().ok() } else { None }
}

impl AddCheckpoint {
    /// The request body.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = format!("old {}\n", self.old_size);
        for h in &self.proof {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint.note_text());
        s
    }

    /// Parses a request body strictly.
    ///
    /// # Errors
    /// [`RequestError`] naming the line at fault.
    pub fn parse(body: &str) -> Result<Self, RequestError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(bad(format!("the body is over {MAX_REQUEST_BYTES} bytes")));
        }
        let Some((first, mut rest)) = body.split_once('\n') else {
            return Err(bad("the body must start with the line `old <size>`"));
        };
        let old_size = first
            .strip_prefix("old ")
            .and_then(parse_size)
            .ok_or_else(|| bad("the first line must be `old <size>`: decimal, no leading zeros"))?;
        let mut proof = Vec::new();
        loop {
            let Some((line, after)) = rest.split_once('\n') else {
                return Err(bad(
                    "the proof lines must be followed by an empty line and the checkpoint",
                ));
            };
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad(format!(
                    "more than {MAX_PROOF_LINES} consistency proof lines"
                )));
            }
            let h = Hash::from_base64(line)
                .ok()
                .filter(|h| h.to_base64() == line)
                .ok_or_else(|| {
                    bad(format!(
                        "consistency proof line {} is not the standard base64 of 32 bytes",
                        proof.len() + 1
                    ))
                })?;
            proof.push(h);
        }
        let checkpoint = SignedCheckpoint::parse(rest)
            .map_err(|e| bad(format!("the checkpoint cannot be read: {e}")))?;
        Ok(Self {
            old_size,
            proof,
            checkpoint,
        })
    }
}

/// What a witness keeps per origin: the latest checkpoint it cosigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessRecord {
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
}

/// Why a witness refuses to cosign, with the status the specification prescribes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// 400: the request is malformed, or the old size exceeds the checkpoint's.
    #[error("{0}")]
    BadRequest(String),
    /// 403: no signature by a key trusted for this origin verifies.
    #[error("no signature on the checkpoint verifies with a key trusted for origin {origin:?}")]
    Forbidden {
        /// The origin.
        origin: String,
    },
    /// 404: the origin is not one this witness follows.
    #[error("this witness does not follow origin {origin:?}")]
    UnknownOrigin {
        /// The origin.
        origin: String,
    },
    /// 409: the old size is not the size the witness last cosigned (`size`), or the checkpoint
    /// has that size with another root hash.
    #[error("{reason}; the witness's latest cosigned size is {size}")]
    Conflict {
        /// The witness's latest cosigned size (the response body).
        size: u64,
        /// Why.
        reason: String,
    },
    /// 422: the consistency proof does not verify against the witness's record.
    #[error("the consistency proof from size {old} to {new} does not verify: {reason}")]
    BadProof {
        /// The old size.
        old: u64,
        /// The checkpoint's size.
        new: u64,
        /// The verifier's words.
        reason: String,
    },
}

impl Refusal {
    /// The HTTP status of the refusal.
    #[must_use]
    pub const fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden { .. } => 403,
            Self::UnknownOrigin { .. } => 404,
            Self::Conflict { .. } => 409,
            Self::BadProof { .. } => 422,
        }
    }
}

/// The witness's checks, in the specification's order, for a request on an origin it follows
/// with the log keys `trusted` and the latest record `record` (None: never cosigned there).
/// Returns the record to keep when the checkpoint may be cosigned.
///
/// # Errors
/// The [`Refusal`] to answer with.
pub fn check_add_checkpoint(
    req: &AddCheckpoint,
    trusted: &[NoteVerifier],
    record: Option<&WitnessRecord>,
) -> Result<WitnessRecord, Refusal> {
    let cp = &req.checkpoint;
    let origin = cp.checkpoint.origin.clone();
    if trusted.is_empty() {
        return Err(Refusal::UnknownOrigin { origin });
    }
    let signed = trusted.iter().any(|v| cp.verify(v).is_ok());
    if !signed {
        return Err(Refusal::Forbidden { origin });
    }
    let new = cp.checkpoint.size;
    if req.old_size > new {
        return Err(Refusal::BadRequest(format!(
            "the old size {} is larger than the checkpoint's size {new}",
            req.old_size
        )));
    }
    let latest = record.map_or(0, |r| r.size);
    if req.old_size != latest {
        return Err(Refusal::Conflict {
            size: latest,
            reason: format!(
                "the old size {} is not the size of the latest checkpoint cosigned for this origin",
                req.old_size
            ),
        });
    }
    let root = cp.checkpoint.root;
    match record {
        None => {
            if !req.proof.is_empty() {
                return Err(Refusal::BadProof {
                    old: 0,
                    new,
                    reason: "the proof must be empty when the old size is 0".into(),
                });
            }
        }
        Some(r) if r.size == new => {
            if r.root != root {
                return Err(Refusal::Conflict {
                    size: r.size,
                    reason: format!(
                        "a checkpoint of size {new} was cosigned with another root hash (a split view)"
                    ),
                });
            }
            if !req.proof.is_empty() {
                return Err(Refusal::BadProof {
                    old: new,
                    new,
                    reason: "the proof must be empty between equal sizes".into(),
                });
            }
        }
        Some(r) => {
            merkle::verify_consistency(r.size, new, &req.proof, &r.root, &root).map_err(|e| {
                Refusal::BadProof {
                    old: r.size,
                    new,
                    reason: e.to_string(),
                }
            })?;
        }
    }
    Ok(WitnessRecord { size: new, root })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::merkle::{CompactRange, consistency_proof, leaf_hash, root_from_leaf_hashes};
    use crate::note::NoteSigner;

    fn leaves(n: u64, salt: u8) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&[salt, i as u8, (i >> 8) as u8]))
            .collect()
    }

    fn root(l: &[Hash]) -> Hash {
        let mut r = CompactRange::new();
        for h in l {
            r.append(*h);
        }
        r.root()
    }

    fn signed(size: u64, root: Hash) -> SignedCheckpoint {
        let s = NoteSigner::new("log.example/t", [5; 32]).unwrap();
        SignedCheckpoint::sign(
            Checkpoint {
                origin: "log.example/t".into(),
                size,
                root,
                extensions: vec![],
            },
            &s,
        )
        .unwrap()
    }

    fn proof(l: &[Hash], old: u64, new: u64) -> Vec<Hash> {
        consistency_proof(old, new, |start, level| {
            let (a, b) = (start as usize, start as usize + (1usize << level));
            Ok::<_, std::convert::Infallible>(root_from_leaf_hashes(&l[a..b]))
        })
        .unwrap()
    }

    fn trusted() -> Vec<NoteVerifier> {
        vec![
            NoteSigner::new("log.example/t", [5; 32])
                .unwrap()
                .verifier(),
        ]
    }

    #[test]
    fn request_round_trips_and_is_the_specs_layout() {
        let l = leaves(10, 1);
        let req = AddCheckpoint {
            old_size: 4,
            proof: proof(&l, 4, 10),
            checkpoint: signed(10, root(&l)),
        };
        let text = req.to_text();
        assert!(text.starts_with("old 4\n"));
        assert_eq!(AddCheckpoint::parse(&text).unwrap(), req);
        let empty = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: signed(10, root(&l)),
        };
        assert!(empty.to_text().starts_with("old 0\n\nlog.example/t\n10\n"));
        assert_eq!(AddCheckpoint::parse(&empty.to_text()).unwrap(), empty);
        for bad in [
            "",
            "old 01\n\n",
            "old x\n\n",
            "new 1\n\n",
            "old 1\nAAAA\n\n",
            "old 1\n",
        ] {
            assert!(AddCheckpoint::parse(bad).is_err(), "{bad:?}");
        }
        let many = format!(
            "old 1\n{}\n{}",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64),
            empty.checkpoint.note_text()
        );
        assert!(
            AddCheckpoint::parse(&many)
                .unwrap_err()
                .reason
                .contains("63")
        );
    }

    #[test]
    fn the_checks_in_order() {
        let l = leaves(20, 1);
        let first = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: signed(8, root(&l[..8])),
        };
        // Unknown origin, then an untrusted key.
        assert_eq!(
            check_add_checkpoint(&first, &[], None)
                .unwrap_err()
                .status(),
            404
        );
        let other = vec![
            NoteSigner::new("log.example/t", [6; 32])
                .unwrap()
                .verifier(),
        ];
        assert_eq!(
            check_add_checkpoint(&first, &other, None)
                .unwrap_err()
                .status(),
            403
        );
        let rec = check_add_checkpoint(&first, &trusted(), None).unwrap();
        assert_eq!(rec.size, 8);
        // The log believes the witness is at 0: 409 with the size.
        let again = check_add_checkpoint(&first, &trusted(), Some(&rec)).unwrap_err();
        assert!(
            matches!(again, Refusal::Conflict { size: 8, .. }),
            "{again}"
        );
        // Growth with a good proof.
        let next = AddCheckpoint {
            old_size: 8,
            proof: proof(&l, 8, 20),
            checkpoint: signed(20, root(&l)),
        };
        let rec2 = check_add_checkpoint(&next, &trusted(), Some(&rec)).unwrap();
        assert_eq!(rec2.size, 20);
        // Same size, same root: cosigned again; another root at that size: a split view, 409.
        let same = AddCheckpoint {
            old_size: 20,
            proof: vec![],
            checkpoint: signed(20, root(&l)),
        };
        assert!(check_add_checkpoint(&same, &trusted(), Some(&rec2)).is_ok());
        let fork = leaves(20, 2);
        let split = AddCheckpoint {
            old_size: 20,
            proof: vec![],
            checkpoint: signed(20, root(&fork)),
        };
        assert_eq!(
            check_add_checkpoint(&split, &trusted(), Some(&rec2))
                .unwrap_err()
                .status(),
            409
        );
        // A history rewritten after entry 12, grown to 30: its proof from 20 cannot verify
        // against the record of 20.
        let mut forked = l[..12].to_vec();
        forked.extend(leaves(18, 3));
        let bad = AddCheckpoint {
            old_size: 20,
            proof: proof(&forked, 20, 30),
            checkpoint: signed(30, root(&forked)),
        };
        assert_eq!(
            check_add_checkpoint(&bad, &trusted(), Some(&rec2))
                .unwrap_err()
                .status(),
            422
        );
        // A consistent growth of the first history is still accepted.
        let mut longer = l.clone();
        longer.extend(leaves(10, 4));
        let good = AddCheckpoint {
            old_size: 20,
            proof: proof(&longer, 20, 30),
            checkpoint: signed(30, root(&longer)),
        };
        assert_eq!(
            check_add_checkpoint(&good, &trusted(), Some(&rec2))
                .unwrap()
                .size,
            30
        );
        // A rolled-back log (smaller than the record): 400 when it says so, 409 when it does not.
        let back = AddCheckpoint {
            old_size: 20,
            proof: vec![],
            checkpoint: signed(8, root(&l[..8])),
        };
        assert_eq!(
            check_add_checkpoint(&back, &trusted(), Some(&rec2))
                .unwrap_err()
                .status(),
            400
        );
        let back = AddCheckpoint {
            old_size: 8,
            proof: vec![],
            checkpoint: signed(8, root(&l[..8])),
        };
        assert_eq!(
            check_add_checkpoint(&back, &trusted(), Some(&rec2))
                .unwrap_err()
                .status(),
            409
        );
    }
}
