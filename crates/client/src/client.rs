//! The client: one method per endpoint of docs/API.md, retries, client-side hashing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use blackbox_core::entry::RedactionPolicy;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;
use crate::query::{AlertQuery, EntryQuery, Format, QueryString, encode, with_query};
use crate::retry::{RetryPolicy, jitter_unit, parse_retry_after};
use crate::types::{
    Checkpoint, CreatedToken, Decision, EntryPage, EntryRecord, IngestResponse, NewToken,
    RawEntries, Token, TokenInfo, TokenList,
};

/// The response header that carries the cursor of the next page.
pub const NEXT_CURSOR_HEADER: &str = "blackbox-next-cursor";

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

/// A client of one Blackbox service with one token. Cheap to clone (shared connection pool);
/// use one per process.
///
/// # Delivery
/// Ingest is **at-least-once** at best, never exactly-once. The client retries on its own only
/// when it knows nothing was written (429, 503, no connection). If a request fails after it was
/// sent — a timeout, a reset, a lost response — the service may have committed the events; the
/// error then says so ([`Error::outcome_unknown`]), and sending the events again (by the caller,
/// or by the client with [`RetryPolicy::retry_unknown_outcome`]) may write them twice. Give events
/// a `client_seq` so that duplicates can be recognised by (`agent_id`, `session_id`, `client_seq`).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Base URL without a trailing `/`.
    base: String,
    /// `Bearer <token>`, marked sensitive.
    auth: HeaderValue,
    token_id: Option<String>,
    retry: RetryPolicy,
    /// `None` when client-side hashing is off.
    redaction: Option<RedactionPolicy>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token: only its public id.
        f.debug_struct("Client")
            .field("base_url", &self.inner.base)
            .field("token_id", &self.inner.token_id)
            .field("retry", &self.inner.retry)
            .field("hash_raw_content", &self.inner.redaction.is_some())
            .finish_non_exhaustive()
    }
}

/// Settings of a [`Client`].
pub struct ClientBuilder {
    base_url: String,
    token: Token,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    retry: RetryPolicy,
    redaction: Option<RedactionPolicy>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("hash_raw_content", &self.redaction.is_some())
            .finish()
    }
}

impl ClientBuilder {
    /// Whole-request timeout (default 30 s; `None` for none). A timed-out ingest has an unknown
    /// outcome.
    #[must_use]
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time allowed to open a connection (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// When to retry (default [`RetryPolicy::default`]: 5 attempts).
    #[must_use]
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Hash raw content (prompts, queries, …) before sending, with the default raw list of
    /// docs/FORMAT.md §4 (on by default). Off sends events as they are and lets the service hash.
    #[must_use]
    pub fn hash_raw_content(mut self, on: bool) -> Self {
        self.redaction = on.then(RedactionPolicy::default);
        self
    }

    /// Hash raw content with this policy (its `raw_fields`; personal fields are the service's
    /// business). Use the same list as the service's `[redaction]`.
    #[must_use]
    pub fn redaction_policy(mut self, policy: RedactionPolicy) -> Self {
        self.redaction = Some(policy);
        self
    }

    /// The client.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a base URL that is not absolute `http(s)://`;
    /// [`Error::InvalidToken`] for a token that cannot go in a header; [`Error::Transport`] if
    /// the HTTP stack cannot be set up.
    pub fn build(self) -> Result<Client, Error> {
        let base = self.base_url.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| Error::InvalidUrl {
            url: self.base_url.clone(),
            problem: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::InvalidUrl {
                url: self.base_url,
                problem: "the scheme must be http or https".into(),
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::InvalidUrl {
                url: self.base_url,
                problem: "the base URL must not have a query or fragment".into(),
            });
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
            .map_err(|_| Error::InvalidToken)?;
        auth.set_sensitive(true);
        let mut http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            // Direct connections only: the service is on the agent's host or network, and an
            // HTTP_PROXY meant for the internet must not see the bearer token.
            .no_proxy()
            .user_agent(concat!("blackbox-client/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = self.timeout {
            http = http.timeout(t);
        }
        let http = http.build().map_err(Error::from_reqwest)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                token_id: self.token.id().map(str::to_owned),
                retry: self.retry,
                redaction: self.redaction,
            }),
        })
    }
}

/// A request, ready to be sent as many times as needed.
struct Req {
    method: Method,
    /// Path and query, starting with `/`.
    target: String,
    body: Option<(Bytes, &'static str)>,
    /// Whether 429/503/connection failures are retried (not for probes).
    retry: bool,
}

impl Req {
    fn get(target: String) -> Self {
        Self {
            method: Method::GET,
            target,
            body: None,
            retry: true,
        }
    }
}

/// A successful answer.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::bad_body(self.status, what, &e, &self.body))
    }

    fn text(&self, what: &str) -> Result<String, Error> {
        String::from_utf8(self.body.to_vec()).map_err(|_| Error::UnexpectedResponse {
            status: self.status,
            detail: format!("{what}: not UTF-8"),
        })
    }

    fn next_cursor(&self) -> Option<String> {
        self.headers
            .get(NEXT_CURSOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

impl Client {
    /// A client with default settings (30 s timeout, 5 attempts, client-side hashing on).
    ///
    /// # Errors
    /// As [`ClientBuilder::build`].
    pub fn new(base_url: &str, token: impl Into<Token>) -> Result<Self, Error> {
        Self::builder(base_url, token).build()
    }

    /// A builder, to set timeouts, retries and hashing.
    #[must_use]
    pub fn builder(base_url: &str, token: impl Into<Token>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_owned(),
            token: token.into(),
            timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            redaction: Some(RedactionPolicy::default()),
        }
    }

    /// The base URL, without a trailing `/`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The retry policy in force.
    #[must_use]
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    // ---- ingest ---------------------------------------------------------------------------------

    /// Appends events (`POST /v1/events`, a JSON array), after hashing their raw content when
    /// hashing is on. Either all are written or none. See [`Client`] on delivery.
    ///
    /// # Errors
    /// [`Error::Event`] when an event cannot be hashed (nothing sent); [`Error::Api`] when the
    /// service refuses the request (`index` names the event); transport errors.
    pub async fn append(&self, events: &[Value]) -> Result<IngestResponse, Error> {
        let hashed = self.prepare_all(events)?;
        self.append_prepared(&hashed).await
    }

    /// Appends events given as NDJSON (one event per line; blank lines skipped), hashing their raw
    /// content first when hashing is on (a line that is not JSON is passed on unchanged, for the
    /// service to refuse with its index).
    ///
    /// # Errors
    /// As [`Client::append`].
    pub async fn append_ndjson(&self, ndjson: impl Into<Bytes>) -> Result<IngestResponse, Error> {
        let raw: Bytes = ndjson.into();
        let body = match &self.inner.redaction {
            None => raw,
            Some(policy) => Bytes::from(hash_ndjson(&raw, policy)?),
        };
        let reply = self
            .send(Req {
                method: Method::POST,
                target: "/v1/events".into(),
                body: Some((body, NDJSON)),
                retry: true,
            })
            .await?;
        reply.json("ingest response")
    }

    /// Hashes the raw content of one event in place when hashing is on (what `append` does to
    /// each event).
    ///
    /// # Errors
    /// [`Error::Event`] (with index 0) when the event cannot be hashed.
    pub fn prepare(&self, event: &mut Value) -> Result<(), Error> {
        if let Some(policy) = &self.inner.redaction {
            blackbox_core::event::hash_raw_content(event, policy).map_err(|e| Error::Event {
                index: 0,
                source: Arc::new(e),
            })?;
        }
        Ok(())
    }

    fn prepare_all(&self, events: &[Value]) -> Result<Vec<Value>, Error> {
        let mut out = events.to_vec();
        if let Some(policy) = &self.inner.redaction {
            for (index, ev) in out.iter_mut().enumerate() {
                blackbox_core::event::hash_raw_content(ev, policy).map_err(|e| Error::Event {
                    index,
                    source: Arc::new(e),
                })?;
            }
        }
        Ok(out)
    }

    /// Sends events that are already prepared (hashed), as a JSON array.
    pub(crate) async fn append_prepared(&self, events: &[Value]) -> Result<IngestResponse, Error> {
        let body = serde_json::to_vec(events).map_err(|e| Error::UnexpectedResponse {
            // Serialising a Value cannot fail; status 0 marks a client-side problem.
            status: 0,
            detail: format!("cannot serialise events: {e}"),
        })?;
        let reply = self
            .send(Req {
                method: Method::POST,
                target: "/v1/events".into(),
                body: Some((Bytes::from(body), JSON)),
                retry: true,
            })
            .await?;
        let resp: IngestResponse = reply.json("ingest response")?;
        if resp.entries.len() != events.len() {
            return Err(Error::UnexpectedResponse {
                status: reply.status,
                detail: format!(
                    "sent {} events, the service answered {} entries",
                    events.len(),
                    resp.entries.len()
                ),
            });
        }
        Ok(resp)
    }

    // ---- reading --------------------------------------------------------------------------------

    /// One request of `GET /v1/entries` (JSONL): the entries and, with a `limit`, the cursor of
    /// the next page.
    ///
    /// # Errors
    /// [`Error::Api`] (e.g. `invalid_parameter`), a body that is not JSONL, transport errors.
    pub async fn entries_page(&self, query: &EntryQuery) -> Result<EntryPage, Error> {
        let target = with_query("/v1/entries", &query.to_query_string(Some(Format::Jsonl)));
        let reply = self.send(Req::get(target)).await?;
        let mut entries = Vec::new();
        for line in reply.body.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            entries.push(
                serde_json::from_slice(line)
                    .map_err(|e| Error::bad_body(reply.status, "entry line", &e, line))?,
            );
        }
        Ok(EntryPage {
            entries,
            next_cursor: reply.next_cursor(),
        })
    }

    /// The entries of one request (one page when `query.limit` is set).
    ///
    /// # Errors
    /// As [`Client::entries_page`].
    pub async fn entries(&self, query: &EntryQuery) -> Result<Vec<Value>, Error> {
        Ok(self.entries_page(query).await?.entries)
    }

    /// Pages through `GET /v1/entries`, following `Blackbox-Next-Cursor`.
    #[must_use]
    pub fn pages(&self, query: EntryQuery) -> Pages {
        Pages {
            client: self.clone(),
            query,
            done: false,
        }
    }

    /// Every entry matching `query`, following cursors page by page (`query.limit` is the page
    /// size), stopping after `max_entries` entries.
    ///
    /// # Errors
    /// As [`Client::entries_page`].
    pub async fn entries_all(
        &self,
        query: EntryQuery,
        max_entries: usize,
    ) -> Result<Vec<Value>, Error> {
        let mut pages = self.pages(query);
        let mut out = Vec::new();
        while out.len() < max_entries {
            match pages.next().await? {
                Some(page) => out.extend(page),
                None => break,
            }
        }
        out.truncate(max_entries);
        Ok(out)
    }

    /// `GET /v1/entries` in `format`, the body passed through untouched (for CSV or JSONL
    /// export).
    ///
    /// # Errors
    /// As [`Client::entries_page`].
    pub async fn entries_raw(
        &self,
        query: &EntryQuery,
        format: Format,
    ) -> Result<RawEntries, Error> {
        let target = with_query("/v1/entries", &query.to_query_string(Some(format)));
        let reply = self.send(Req::get(target)).await?;
        Ok(RawEntries {
            next_cursor: reply.next_cursor(),
            body: reply.body,
        })
    }

    /// One entry (`GET /v1/entries/{entry_id}`).
    ///
    /// # Errors
    /// [`Error::Api`] `not_found` for an unknown entry or one of another tenant; transport errors.
    pub async fn entry(
        &self,
        entry_id: &str,
        tenant_id: Option<&str>,
    ) -> Result<EntryRecord, Error> {
        let target = with_query(
            &format!("/v1/entries/{}", encode(entry_id)),
            &tenant_query(tenant_id),
        );
        self.send(Req::get(target)).await?.json("entry")
    }

    /// The verification report of the tenant's chain (`GET /v1/verify`), as
    /// `blackbox verify --format json`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn verify(&self, tenant_id: Option<&str>) -> Result<Value, Error> {
        let target = with_query("/v1/verify", &tenant_query(tenant_id));
        self.send(Req::get(target))
            .await?
            .json("verification report")
    }

    /// The latest signed checkpoint (`GET /v1/checkpoints/latest`).
    ///
    /// # Errors
    /// API (`not_found` before the first checkpoint) and transport errors.
    pub async fn latest_checkpoint(&self, tenant_id: Option<&str>) -> Result<Checkpoint, Error> {
        let target = with_query("/v1/checkpoints/latest", &tenant_query(tenant_id));
        self.send(Req::get(target)).await?.json("checkpoint")
    }

    /// Has the service sign a checkpoint of the tenant's chain now (when its latest does not
    /// cover every entry; admin token) and returns the latest (`POST /v1/checkpoints`).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn sign_checkpoint(&self, tenant_id: Option<&str>) -> Result<Checkpoint, Error> {
        let target = with_query("/v1/checkpoints", &tenant_query(tenant_id));
        self.send(Req {
            method: Method::POST,
            target,
            body: None,
            // Signing is idempotent: a second call signs nothing new.
            retry: true,
        })
        .await?
        .json("checkpoint")
    }

    /// An inclusion proof document (docs/FORMAT.md §10) for an entry, as the service wrote it
    /// (write it to a file for `blackbox verify-proof`).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn inclusion_proof(
        &self,
        entry_id: &str,
        tenant_id: Option<&str>,
    ) -> Result<String, Error> {
        let mut q = QueryString::default();
        q.opt("entry_id", Some(entry_id));
        q.opt("tenant_id", tenant_id);
        let target = with_query("/v1/proofs/inclusion", &q.finish());
        self.send(Req::get(target)).await?.text("inclusion proof")
    }

    /// A log slice (docs/FORMAT.md §10): the entries `selection` names, at most `limit`, each
    /// with its inclusion proof against the latest checkpoint.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn log_slice(
        &self,
        selection: &blackbox_core::proof::SliceSelection,
        limit: usize,
        tenant_id: Option<&str>,
    ) -> Result<String, Error> {
        let mut q = QueryString::default();
        q.opt("agent_id", selection.agent_id.as_deref());
        q.opt("session_id", selection.session_id.as_deref());
        q.opt("trace_id", selection.trace_id.as_deref());
        q.opt("start", selection.start.as_deref());
        q.opt("end", selection.end.as_deref());
        q.opt_u64("limit", u64::try_from(limit).ok());
        q.opt("tenant_id", tenant_id);
        let target = with_query("/v1/proofs/slice", &q.finish());
        self.send(Req::get(target)).await?.text("log slice")
    }

    /// A consistency proof document between two stored checkpoints (`to_size` `None`: the
    /// latest).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn consistency_proof(
        &self,
        from_size: u64,
        to_size: Option<u64>,
        tenant_id: Option<&str>,
    ) -> Result<String, Error> {
        let mut q = QueryString::default();
        q.opt_u64("from_size", Some(from_size));
        q.opt_u64("to_size", to_size);
        q.opt("tenant_id", tenant_id);
        let target = with_query("/v1/proofs/consistency", &q.finish());
        self.send(Req::get(target)).await?.text("consistency proof")
    }

    // ---- detection -------------------------------------------------------------------------------

    /// Asks whether a tool call may go ahead (`POST /v1/decide`); the call is recorded either
    /// way. `request` holds `agent_id`, `session_id`, `tool_name`, `args` and optionally
    /// `agent_role`, `invocation_id`, `client_seq`, `prompt`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn decide(&self, request: &Value) -> Result<Decision, Error> {
        let body = serde_json::to_vec(request).map_err(|e| Error::UnexpectedResponse {
            status: 0,
            detail: format!("cannot serialise the decision request: {e}"),
        })?;
        self.send(Req {
            method: Method::POST,
            target: "/v1/decide".into(),
            body: Some((Bytes::from(body), JSON)),
            // Retrying records the attempt twice, which is what happened; a lost answer would
            // leave the agent without one.
            retry: true,
        })
        .await?
        .json("decision")
    }

    /// Agents known to the detector (`GET /v1/agents`), paused and throttled ones first.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn agents(&self, tenant_id: Option<&str>) -> Result<Vec<Value>, Error> {
        let target = with_query("/v1/agents", &tenant_query(tenant_id));
        let v: Value = self.send(Req::get(target)).await?.json("agent list")?;
        Ok(v.get("agents")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Pauses (`pause` true) or resumes an agent (`POST /v1/agents/{id}/pause|resume`, admin).
    /// A resume names the alert it answers with `alert_id` (required when a rule paused or
    /// throttled the agent; refused with a pause).
    ///
    /// # Errors
    /// API (`alert_id_required`, `not_found` for an unknown alert) and transport errors.
    pub async fn set_agent_paused(
        &self,
        agent_id: &str,
        pause: bool,
        tenant_id: Option<&str>,
        reason: Option<&str>,
        alert_id: Option<&str>,
    ) -> Result<Value, Error> {
        let mut body = serde_json::json!({"tenant_id": tenant_id, "reason": reason});
        if let Some(a) = alert_id {
            body["alert_id"] = a.into();
        }
        let verb = if pause { "pause" } else { "resume" };
        self.send(Req {
            method: Method::POST,
            target: format!("/v1/agents/{}/{verb}", encode(agent_id)),
            body: Some((Bytes::from(body.to_string()), JSON)),
            retry: true,
        })
        .await?
        .json("agent state")
    }

    /// A page of alerts (`GET /v1/alerts`): `{"alerts": [...], "next_cursor": …}`, oldest first;
    /// give `next_cursor` back as [`AlertQuery::cursor`] for the next page.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn alerts(&self, q: &AlertQuery) -> Result<Value, Error> {
        let target = with_query("/v1/alerts", &q.to_query());
        self.send(Req::get(target)).await?.json("alert list")
    }

    /// Acknowledges an alert (`POST /v1/alerts/{id}/ack`, admin): the answer holds the alert
    /// and the `alert_acknowledged` entry written. The note is hashed by the service; only its
    /// SHA-256 is recorded.
    ///
    /// # Errors
    /// API (`forbidden` without the admin scope, `not_found`, `conflict` when the alert is
    /// acknowledged or resolved already) and transport errors.
    pub async fn acknowledge_alert(
        &self,
        alert_id: &str,
        ticket: Option<&str>,
        note: Option<&str>,
    ) -> Result<Value, Error> {
        let body = serde_json::json!({"ticket": ticket, "note": note});
        self.triage(alert_id, "ack", &body).await
    }

    /// Resolves an alert (`POST /v1/alerts/{id}/resolve`, admin) as `true_positive`,
    /// `false_positive` or `accepted_risk`.
    ///
    /// # Errors
    /// As [`Self::acknowledge_alert`].
    pub async fn resolve_alert(
        &self,
        alert_id: &str,
        resolution: &str,
        ticket: Option<&str>,
        note: Option<&str>,
    ) -> Result<Value, Error> {
        let body = serde_json::json!({"resolution": resolution, "ticket": ticket, "note": note});
        self.triage(alert_id, "resolve", &body).await
    }

    async fn triage(&self, alert_id: &str, verb: &str, body: &Value) -> Result<Value, Error> {
        self.send(Req {
            method: Method::POST,
            target: format!("/v1/alerts/{}/{verb}", encode(alert_id)),
            body: Some((Bytes::from(body.to_string()), JSON)),
            // Not retried: a second attempt after a lost answer would be refused as a conflict.
            retry: false,
        })
        .await?
        .json("alert triage")
    }

    /// Erases a data subject's personal data (`POST /v1/erasures`, admin): the answer lists the
    /// chains, the redacted entries and the erasure markers written (never the subject id).
    ///
    /// # Errors
    /// API (`forbidden` without the admin scope, `invalid_request` for an empty reason or
    /// ticket) and transport errors.
    pub async fn erase(
        &self,
        data_subject: &str,
        reason: &str,
        ticket: &str,
    ) -> Result<Value, Error> {
        let body =
            serde_json::json!({"data_subject": data_subject, "reason": reason, "ticket": ticket});
        self.send(Req {
            method: Method::POST,
            target: "/v1/erasures".to_owned(),
            body: Some((Bytes::from(body.to_string()), JSON)),
            // Running it twice is harmless (the second finds nothing left to erase).
            retry: true,
        })
        .await?
        .json("erasure outcome")
    }

    /// Runs retention now (`POST /v1/retention/run`, admin), as the service's schedule does:
    /// archives what is older than each tenant's hot window and expires segments past the
    /// archive retention. The answer's `report` lists the segments archived and deleted.
    ///
    /// # Errors
    /// API (`forbidden` without the admin scope; `unavailable` when the run stopped part way:
    /// what it finished is committed, and running it again goes on) and transport errors.
    pub async fn run_retention(&self) -> Result<Value, Error> {
        self.send(Req {
            method: Method::POST,
            target: "/v1/retention/run".to_owned(),
            body: None,
            // A run that stopped part way says so; the caller decides when to go on.
            retry: false,
        })
        .await?
        .json("retention report")
    }

    /// A compliance export made by the service (`GET /v1/exports`): `params` are the query
    /// parameters (`standard`, `control` or `article`, `output`, `period`, `tenant_id`,
    /// `include_data_subjects`, `sample_size`, `seed`). The answer holds the files (base64) and
    /// the signed manifest.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn export(&self, params: &[(&str, String)]) -> Result<Value, Error> {
        let mut q = QueryString::default();
        for (k, v) in params {
            q.opt(k, Some(v.as_str()));
        }
        let target = with_query("/v1/exports", &q.finish());
        self.send(Req::get(target)).await?.json("export")
    }

    // ---- tokens (admin) -------------------------------------------------------------------------

    /// Creates a token (`POST /v1/tokens`); the answer holds the token, shown only this once.
    ///
    /// # Errors
    /// API (`forbidden` without the admin scope) and transport errors.
    pub async fn create_token(&self, new: &NewToken) -> Result<CreatedToken, Error> {
        let body = serde_json::to_vec(new).map_err(|e| Error::UnexpectedResponse {
            status: 0,
            detail: format!("cannot serialise the token request: {e}"),
        })?;
        let reply = self
            .send(Req {
                method: Method::POST,
                target: "/v1/tokens".into(),
                body: Some((Bytes::from(body), JSON)),
                // A lost answer would lose the only copy of the secret; creating another is
                // harmless, so connection failures and 429/503 are retried as for reads.
                retry: true,
            })
            .await?;
        reply.json("created token")
    }

    /// Lists tokens without their secrets (`GET /v1/tokens`); with `tenant_id`, only that
    /// tenant's (filtered here: the service lists all).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn list_tokens(&self, tenant_id: Option<&str>) -> Result<Vec<TokenInfo>, Error> {
        let list: TokenList = self
            .send(Req::get("/v1/tokens".into()))
            .await?
            .json("token list")?;
        let mut list = list.into_vec();
        if let Some(t) = tenant_id {
            list.retain(|i| i.tenant_id.as_deref() == Some(t));
        }
        Ok(list)
    }

    /// Revokes a token by id (`DELETE /v1/tokens/{id}`).
    ///
    /// # Errors
    /// API (`not_found`) and transport errors.
    pub async fn revoke_token(&self, token_id: &str) -> Result<(), Error> {
        self.send(Req {
            method: Method::DELETE,
            target: format!("/v1/tokens/{}", encode(token_id)),
            body: None,
            retry: true,
        })
        .await?;
        Ok(())
    }

    // ---- operations -----------------------------------------------------------------------------

    /// `GET /healthz`: the process is up. Not retried.
    ///
    /// # Errors
    /// Any non-2xx answer or transport error.
    pub async fn healthz(&self) -> Result<(), Error> {
        self.probe("/healthz").await
    }

    /// `GET /readyz`: the store is open and the writer running. Not retried (a 503 is the
    /// answer).
    ///
    /// # Errors
    /// Any non-2xx answer (503 when not ready) or transport error.
    pub async fn readyz(&self) -> Result<(), Error> {
        self.probe("/readyz").await
    }

    async fn probe(&self, path: &str) -> Result<(), Error> {
        self.send(Req {
            retry: false,
            ..Req::get(path.to_owned())
        })
        .await?;
        Ok(())
    }

    /// `GET /metrics`, Prometheus text format.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn metrics(&self) -> Result<String, Error> {
        self.send(Req::get("/metrics".into()))
            .await?
            .text("metrics")
    }

    /// `GET /openapi.json`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn openapi(&self) -> Result<Value, Error> {
        self.send(Req::get("/openapi.json".into()))
            .await?
            .json("OpenAPI document")
    }

    // ---- transport ------------------------------------------------------------------------------

    /// Sends `req`, retrying per the policy; a 2xx answer is returned, anything else is an error.
    async fn send(&self, req: Req) -> Result<Reply, Error> {
        let policy = &self.inner.retry;
        let max_attempts = if req.retry {
            policy.max_attempts.max(1)
        } else {
            1
        };
        let url = format!("{}{}", self.inner.base, req.target);
        let mut attempt = 1;
        loop {
            let err = match self.attempt(&req, &url).await {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            let retry_after = match &err {
                // Not connected: nothing was sent.
                Error::Connect(_) => None,
                // Refused: the service wrote nothing of the request.
                Error::Api {
                    status: 429 | 503,
                    retry_after,
                    ..
                } => *retry_after,
                Error::UnexpectedResponse {
                    status: 429 | 503, ..
                } => None,
                // May have been committed: only when the caller accepts duplicates.
                Error::Transport(_) if policy.retry_unknown_outcome => None,
                _ => return Err(err),
            };
            if attempt >= max_attempts {
                return Err(err);
            }
            // None: the service asks for a longer wait than the policy accepts.
            let Some(delay) = policy.delay(attempt, retry_after, jitter_unit()) else {
                return Err(err);
            };
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One try of `req`.
    async fn attempt(&self, req: &Req, url: &str) -> Result<Reply, Error> {
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), url)
            .header(header::AUTHORIZATION, self.inner.auth.clone());
        if let Some((body, content_type)) = &req.body {
            builder = builder
                .header(header::CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        let resp = builder.send().await.map_err(Error::from_reqwest)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        // The status came, so the request was sent: a failure now has an unknown outcome.
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::Transport(Arc::new(e)))?;
        if (200..300).contains(&status) {
            return Ok(Reply {
                status,
                headers,
                body,
            });
        }
        let retry_after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        Err(Error::from_response(status, retry_after, &body))
    }
}

/// Pages of `GET /v1/entries`, following `Blackbox-Next-Cursor`.
#[derive(Debug)]
pub struct Pages {
    client: Client,
    query: EntryQuery,
    done: bool,
}

impl Pages {
    /// The next page, or `None` after the last one.
    ///
    /// # Errors
    /// As [`Client::entries_page`]; the same page can be asked for again after an error.
    pub async fn next(&mut self) -> Result<Option<Vec<Value>>, Error> {
        if self.done {
            return Ok(None);
        }
        let page = self.client.entries_page(&self.query).await?;
        match page.next_cursor {
            Some(c) if !page.entries.is_empty() => self.query.cursor = Some(c),
            _ => self.done = true,
        }
        Ok(Some(page.entries))
    }
}

fn tenant_query(tenant_id: Option<&str>) -> String {
    let mut q = QueryString::default();
    q.opt("tenant_id", tenant_id);
    q.finish()
}

/// Hashes the raw content of every JSON line of an NDJSON body.
fn hash_ndjson(raw: &[u8], policy: &RedactionPolicy) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(raw.len());
    let mut index = 0;
    for line in raw.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(mut v) => {
                blackbox_core::event::hash_raw_content(&mut v, policy).map_err(|e| {
                    Error::Event {
                        index,
                        source: Arc::new(e),
                    }
                })?;
                // Writing a Value into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, &v);
            }
            Err(_) => out.extend_from_slice(line),
        }
        out.push(b'\n');
        index += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROMPT: &str = "Customer asks about order 4711: where is it?";
    const SQL: &str = "SELECT * FROM orders WHERE customer_id = 4711";

    fn client(hash: bool) -> Client {
        Client::builder("http://127.0.0.1:1/", "bbx_0123456789abcdef_secretsecret")
            .hash_raw_content(hash)
            .build()
            .unwrap()
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = client(true);
        let d = format!("{c:?}");
        assert!(!d.contains("secretsecret"), "{d}");
        assert!(d.contains("0123456789abcdef"));
        assert_eq!(c.base_url(), "http://127.0.0.1:1");
        let b = Client::builder("http://x", "bbx_0123456789abcdef_secretsecret");
        assert!(!format!("{b:?}").contains("secretsecret"));
    }

    #[test]
    fn bad_urls_and_tokens_are_refused() {
        assert!(matches!(
            Client::new("127.0.0.1:7700", "t"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            Client::new("ftp://h/", "t"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            Client::new("http://h/?a=b", "t"),
            Err(Error::InvalidUrl { .. })
        ));
        let e = Client::new("http://h", "bad\ntoken").unwrap_err();
        assert!(matches!(e, Error::InvalidToken));
        assert!(!e.to_string().contains("bad"));
    }

    #[test]
    fn hashing_removes_raw_content_from_the_body() {
        let events = [
            json!({"agent_id": "a", "session_id": "s", "event_type": "llm_request",
                   "payload": {"model": "m", "prompt": PROMPT}}),
            json!({"agent_id": "a", "session_id": "s", "event_type": "tool_call",
                   "tool_name": "query_database", "args": {"query": SQL, "limit": 10}}),
        ];
        let hashed = client(true).prepare_all(&events).unwrap();
        let body = serde_json::to_string(&hashed).unwrap();
        assert!(!body.contains("Customer asks"), "{body}");
        assert!(!body.contains("SELECT"), "{body}");
        assert!(body.contains("prompt_hash"));
        assert!(body.contains("query_hash"));
        // The string digest is SHA-256 of the UTF-8 text (docs/FORMAT.md §4).
        let expected = format!("{}", blackbox_core::Hash::digest(PROMPT.as_bytes()));
        assert_eq!(hashed[0]["payload"]["prompt_hash"], json!(expected));
        // The caller's events are untouched.
        assert_eq!(events[0]["payload"]["prompt"], json!(PROMPT));

        let plain = client(false).prepare_all(&events).unwrap();
        assert!(serde_json::to_string(&plain).unwrap().contains("SELECT"));
    }

    #[test]
    fn hashing_errors_name_the_event() {
        let events = [
            json!({"agent_id": "a", "session_id": "s", "event_type": "x", "payload": {}}),
            json!({"agent_id": "a", "session_id": "s", "event_type": "x",
                   "payload": {"prompt": "p", "prompt_hash": format!("sha256:{}", "0".repeat(64))}}),
        ];
        let e = client(true).prepare_all(&events).unwrap_err();
        assert!(matches!(e, Error::Event { index: 1, .. }), "{e:?}");
    }

    #[test]
    fn ndjson_is_hashed_line_by_line() {
        let raw = format!(
            "{}\n\n{}\nnot json\n",
            json!({"agent_id": "a", "session_id": "s", "event_type": "llm_request",
                   "payload": {"model": "m", "prompt": PROMPT}}),
            json!({"agent_id": "a", "session_id": "s", "event_type": "tool_call",
                   "tool_name": "q", "args": {"query": SQL}}),
        );
        let out = hash_ndjson(raw.as_bytes(), &RedactionPolicy::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains("Customer asks") && !text.contains("SELECT"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], "not json");
    }

    // ---- against the real service (faults injected in front of it) ------------------------------

    use crate::testserver::{Behaviour, TENANT, TOKEN, TestServer};
    use crate::{EntryQuery, Format, NewToken, Scope};

    fn events() -> Vec<Value> {
        vec![
            json!({"agent_id": "a", "session_id": "s", "event_type": "llm_request", "client_seq": 1,
                   "payload": {"model": "m", "prompt": PROMPT}}),
            json!({"agent_id": "a", "session_id": "s", "event_type": "tool_call", "client_seq": 2,
                   "tool_name": "query_database", "args": {"query": SQL}}),
        ]
    }

    #[tokio::test]
    async fn append_sends_hashed_json_with_the_token() {
        let server = TestServer::start(Behaviour::default()).await;
        let resp = server.client().append(&events()).await.unwrap();
        assert_eq!(resp.count, 2);
        assert_eq!(resp.tenant_id, TENANT);
        assert_eq!(resp.entries[0].seq, 1);
        assert_eq!(resp.entries[1].seq, 2);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        let (method, target, ctype, body) = &reqs[0];
        assert_eq!((method.as_str(), target.as_str()), ("POST", "/v1/events"));
        assert_eq!(ctype, "application/json");
        assert!(
            !body.contains("Customer asks") && !body.contains("SELECT"),
            "{body}"
        );
        assert!(body.starts_with('['));
        // Each entry is the event sent: read back by id, it carries the event's client_seq.
        for (i, r) in resp.entries.iter().enumerate() {
            let rec = server.client().entry(&r.entry_id, None).await.unwrap();
            assert_eq!(rec.seq, r.seq);
            assert_eq!(rec.entry_hash, r.entry_hash);
            assert_eq!(rec.entry["client_seq"], i + 1, "{}", rec.line);
        }
    }

    #[tokio::test]
    async fn append_ndjson_sends_hashed_ndjson() {
        let server = TestServer::start(Behaviour::default()).await;
        let ndjson: String = events().iter().map(|e| format!("{e}\n")).collect();
        let resp = server.client().append_ndjson(ndjson).await.unwrap();
        assert_eq!(resp.count, 2);
        let (_, _, ctype, body) = &server.requests()[0];
        assert_eq!(ctype, "application/x-ndjson");
        assert!(
            !body.contains("Customer asks") && !body.contains("SELECT"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn retries_429_then_succeeds() {
        let server = TestServer::start(Behaviour {
            fail_first: 2,
            fail_status: 429,
            retry_after: Some("0"),
            ..Behaviour::default()
        })
        .await;
        let resp = server.client().append(&events()).await.unwrap();
        assert_eq!(resp.count, 2);
        assert_eq!(server.requests().len(), 3);
        assert_eq!(server.batch_sizes(), [2]);
    }

    #[tokio::test]
    async fn retries_503_without_retry_after() {
        let server = TestServer::start(Behaviour {
            fail_first: 1,
            fail_status: 503,
            ..Behaviour::default()
        })
        .await;
        server.client().verify(None).await.unwrap();
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let server = TestServer::start(Behaviour {
            fail_first: 100,
            fail_status: 503,
            retry_after: Some("0"),
            ..Behaviour::default()
        })
        .await;
        let e = server.client().append(&events()).await.unwrap_err();
        assert_eq!(e.code(), Some("unavailable"));
        assert!(matches!(e, Error::Api { retry_after: Some(d), .. } if d.is_zero()));
        assert_eq!(server.requests().len(), 5);
    }

    #[tokio::test]
    async fn a_too_long_retry_after_is_not_waited_for() {
        let server = TestServer::start(Behaviour {
            fail_first: 100,
            fail_status: 429,
            retry_after: Some("3600"),
            ..Behaviour::default()
        })
        .await;
        let e = server.client().append(&events()).await.unwrap_err();
        assert_eq!(e.status(), Some(429));
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried_and_decoded() {
        let server = TestServer::start(Behaviour {
            refuse_client_seq: Some(2),
            ..Behaviour::default()
        })
        .await;
        let e = server.client().append(&events()).await.unwrap_err();
        assert!(
            matches!(&e, Error::Api { status: 400, code, index: Some(1), .. } if code == "invalid_event"),
            "{e:?}"
        );
        assert_eq!(server.requests().len(), 1);

        let wrong = Client::new(&server.url, TOKEN).unwrap();
        let e = wrong.verify(None).await.unwrap_err();
        assert_eq!(e.code(), Some("unauthenticated"));
        assert!(!format!("{e:?}{e}").contains("AAAA"));
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_reported() {
        // Bind then drop a listener: its port now refuses connections.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = Client::builder(&format!("http://127.0.0.1:{port}"), TOKEN)
            .retry_policy(RetryPolicy {
                max_attempts: 3,
                initial_backoff: std::time::Duration::from_millis(1),
                ..RetryPolicy::default()
            })
            .build()
            .unwrap();
        let t0 = std::time::Instant::now();
        let e = client.append(&events()).await.unwrap_err();
        assert!(matches!(e, Error::Connect(_)), "{e:?}");
        assert!(!e.outcome_unknown());
        assert!(!format!("{e:?}").contains("AAAA"));
        assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    }

    #[tokio::test]
    async fn reads() {
        let server = TestServer::start(Behaviour::default()).await;
        let c = server.client();
        // Five entries in two commits (checkpoints at sizes 2 and 5).
        let evs: Vec<Value> = (1..=5)
            .map(|i| {
                json!({"agent_id": "a", "session_id": "s", "event_type": "tool_call",
                            "client_seq": i, "tool_name": "t"})
            })
            .collect();
        let first = c.append(&evs[..2]).await.unwrap();
        c.append(&evs[2..]).await.unwrap();

        let all = c.entries(&EntryQuery::new()).await.unwrap();
        assert_eq!(all.len(), 5);
        let page = c.entries_page(&EntryQuery::new().limit(2)).await.unwrap();
        assert_eq!(page.entries.len(), 2);
        let cursor = page.next_cursor.clone().unwrap();
        let paged = c
            .entries_all(EntryQuery::new().agent_id("a").limit(2), 100)
            .await
            .unwrap();
        let seqs: Vec<u64> = paged.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert!(
            c.entries(&EntryQuery::new().agent_id("a b"))
                .await
                .unwrap()
                .is_empty()
        );
        let capped = c.entries_all(EntryQuery::new().limit(2), 3).await.unwrap();
        assert_eq!(capped.len(), 3);
        let csv = c
            .entries_raw(&EntryQuery::new().limit(4), Format::Csv)
            .await
            .unwrap();
        let text = String::from_utf8(csv.body.to_vec()).unwrap();
        assert!(text.starts_with("tenant_id,seq,"), "{text}");
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(csv.next_cursor.is_some());

        let id = &first.entries[0].entry_id;
        let rec = c.entry(id, None).await.unwrap();
        assert_eq!(rec.entry["entry_id"], id.as_str());
        let e = c
            .entry("019d8d26-717b-7111-9111-111111111111", None)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(404), Some("not_found")));

        assert_eq!(c.verify(Some(TENANT)).await.unwrap()["status"], "ok");
        // Signed at the first commit; the second may wait for the next heartbeat.
        let cp = c.latest_checkpoint(None).await.unwrap();
        assert!((2..=5).contains(&cp.size), "{cp:?}");
        assert!(cp.note.contains(&format!("\n{}\n", cp.size)), "{cp:?}");
        let proof = c.inclusion_proof(id, Some(TENANT)).await.unwrap();
        assert!(proof.contains("inclusion_proof"), "{proof}");
        let e = c.inclusion_proof("e/1", Some(TENANT)).await.unwrap_err();
        assert_eq!(e.code(), Some("invalid_parameter"));
        let proof = c.consistency_proof(2, None, None).await.unwrap();
        assert!(proof.contains("consistency_proof"), "{proof}");

        let targets: Vec<String> = server.requests().into_iter().map(|r| r.1).collect();
        assert!(
            targets.contains(&format!(
                "/v1/entries?agent_id=a&limit=2&format=jsonl&cursor={cursor}"
            )),
            "{targets:?}"
        );
        assert!(
            targets.contains(&"/v1/entries?agent_id=a%20b&format=jsonl".to_owned()),
            "{targets:?}"
        );
        assert!(targets.contains(&"/v1/verify?tenant_id=acme".to_owned()));
        assert!(targets.contains(&"/v1/proofs/inclusion?entry_id=e%2F1&tenant_id=acme".to_owned()));
        assert!(targets.contains(&"/v1/proofs/consistency?from_size=2".to_owned()));
    }

    #[tokio::test]
    async fn tokens_and_probes() {
        let server = TestServer::start(Behaviour {
            not_ready: true,
            ..Behaviour::default()
        })
        .await;
        let c = server.admin();
        let created = c
            .create_token(&NewToken {
                tenant_id: Some("acme".into()),
                scopes: vec![Scope::Ingest],
                label: Some("fleet".into()),
            })
            .await
            .unwrap();
        let secret = created.token.expose().to_owned();
        assert_eq!(created.token.id(), Some(created.id.as_str()));
        assert!(!format!("{created:?}").contains(&secret));
        assert_eq!(created.scopes, [Scope::Ingest]);
        assert_eq!(created.label.as_deref(), Some("fleet"));
        // The new token works, for what its scope allows.
        let agent = Client::new(&server.url, secret.as_str()).unwrap();
        let written = agent.append(&events()).await.unwrap();
        assert_eq!(written.tenant_id, "acme");
        assert_eq!(
            agent.verify(None).await.unwrap_err().code(),
            Some("forbidden")
        );
        let list = c.list_tokens(None).await.unwrap();
        let mine = list.iter().find(|t| t.id == created.id).unwrap();
        assert_eq!(mine.scopes, [Scope::Ingest]);
        assert_eq!(mine.revoked_ms, None);
        assert!(list.iter().any(|t| t.scopes == [Scope::Admin]));
        assert!(c.list_tokens(Some("globex")).await.unwrap().is_empty());
        c.revoke_token(&created.id).await.unwrap();
        let e = agent.append(&events()).await.unwrap_err();
        assert_eq!(e.code(), Some("unauthenticated"));
        let e = c.revoke_token(&created.id).await.unwrap_err();
        assert_eq!(e.code(), Some("not_found"));
        c.healthz().await.unwrap();
        // readyz answers 503 and must not be retried.
        let before = server.requests().len();
        assert_eq!(c.readyz().await.unwrap_err().status(), Some(503));
        assert_eq!(server.requests().len(), before + 1);
    }
}
