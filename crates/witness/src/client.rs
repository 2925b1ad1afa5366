//! The log's side of C2SP tlog-witness: submit a checkpoint with a consistency proof to a
//! witness and collect its cosignature, checked against the witness's public key.

use std::time::Duration;

use blackbox_core::cosignature::CosignerKey;
use blackbox_core::note::{NoteSignature, SignedNote};
use blackbox_core::witness::AddCheckpoint;
use blackbox_webhooks::dispatch::HttpClient;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};

/// Most bytes of a witness's response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A witness a log submits to: its submission URL prefix and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    /// The submission prefix (`…/add-checkpoint` is appended).
    pub url: String,
    /// Its cosigning key.
    pub key: CosignerKey,
}

impl Witness {
    /// The witness's name (its key name).
    #[must_use]
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// The `add-checkpoint` URL.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("{}/add-checkpoint", self.url.trim_end_matches('/'))
    }
}

/// Why a submission did not yield a cosignature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// 409 Conflict: the witness's latest cosigned size for this origin is `size` (not the old
    /// size sent), or it cosigned this size with another root hash.
    #[error("the witness answered 409 Conflict: its latest cosigned size is {size}")]
    Conflict {
        /// The size in the response body.
        size: u64,
    },
    /// A refusal other than 409: 400, 403 (the witness does not trust the log's key), 404 (it
    /// does not follow this origin), 422 (the consistency proof does not verify against what it
    /// saw).
    #[error("the witness refused with HTTP {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response body (first line, at most 300 characters).
        message: String,
    },
    /// 200 but no valid cosignature by the configured key: a misconfigured or lying witness.
    #[error("the witness's answer holds no valid cosignature by {name}: {problem}")]
    BadCosignature {
        /// The witness's configured name.
        name: String,
        /// What was wrong.
        problem: String,
    },
    /// No answer: connection refused, timeout, a 5xx, or an unreadable answer. Retried.
    #[error("the witness cannot be reached: {0}")]
    Unreachable(String),
}

impl SubmitError {
    /// Whether trying again later may succeed without anyone changing anything.
    #[must_use]
    pub const fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(300).collect()
}

/// Submits `req` to `witness` and returns its valid cosignature lines on the checkpoint.
///
/// # Errors
/// [`SubmitError`].
pub async fn add_checkpoint(
    http: &HttpClient,
    witness: &Witness,
    req: &AddCheckpoint,
    timeout: Duration,
) -> Result<Vec<NoteSignature>, SubmitError> {
    let request = hyper::Request::post(witness.endpoint())
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(hyper::header::USER_AGENT, "blackbox-witness-client")
        .body(Full::new(Bytes::from(req.to_text())))
        .map_err(|e| SubmitError::Unreachable(format!("bad witness URL: {e}")))?;
    let exchange = async {
        let resp = http
            .request(request)
            .await
            .map_err(|e| SubmitError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| SubmitError::Unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok::<_, SubmitError>((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| SubmitError::Unreachable(format!("no answer within {timeout:?}")))??;
    match status {
        200 => cosignatures(witness, req, &body),
        409 => {
            let line = first_line(&body);
            Err(match line.parse::<u64>() {
                Ok(size) => SubmitError::Conflict { size },
                Err(_) => SubmitError::Refused {
                    status,
                    message: format!("409 without a size in its body: {line:?}"),
                },
            })
        }
        s if s >= 500 => Err(SubmitError::Unreachable(format!(
            "HTTP {s}: {}",
            first_line(&body)
        ))),
        s => Err(SubmitError::Refused {
            status: s,
            message: first_line(&body),
        }),
    }
}

/// The cosignature lines of a 200 answer by `witness`'s key that verify over the checkpoint.
fn cosignatures(
    witness: &Witness,
    req: &AddCheckpoint,
    body: &[u8],
) -> Result<Vec<NoteSignature>, SubmitError> {
    let bad = |problem: String| SubmitError::BadCosignature {
        name: witness.name().to_owned(),
        problem,
    };
    let body = std::str::from_utf8(body).map_err(|_| bad("the answer is not UTF-8".into()))?;
    let text = &req.checkpoint.note.text;
    // The answer is signature lines: read them as the signatures of the checkpoint's note.
    let note = SignedNote::parse(&format!("{text}\n{body}"))
        .map_err(|e| bad(format!("the answer is not signature lines ({e})")))?;
    let mut good = Vec::new();
    let mut problems = Vec::new();
    for sig in note.signatures.iter().filter(|s| witness.key.matches(s)) {
        match witness.key.verify(text, sig) {
            Ok(_) => good.push(sig.clone()),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if good.is_empty() {
        return Err(bad(if problems.is_empty() {
            "no line by that name and key ID".into()
        } else {
            problems.join("; ")
        }));
    }
    Ok(good)
}
