//! `POST /v1/events`: append events, durable when answered (docs/API.md "Writing events").

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use blackbox_core::entry::NormalizedEvent;
use blackbox_core::ids::TenantId;
use blackbox_core::origin::Origin;
use blackbox_detect::Features;
use blackbox_ledger::appender::{Body as IntakeBody, Intake, Normaliser, Refusal};

use super::auth::{Caller, Ingest};
use super::input::read_body;
use super::json_text;
use super::shares::body_share;
use crate::AppState;
use crate::error::ApiError;

/// Largest single event, bytes (as `blackbox append`'s longest line: one constant for both).
const MAX_EVENT_BYTES: usize = blackbox_core::json::MAX_EVENT_BYTES;

fn check_event_size(index: usize, len: usize) -> Result<(), ApiError> {
    if len > MAX_EVENT_BYTES {
        return Err(ApiError::bad_request(
            "invalid_event",
            format!("event {index}: is {len} bytes; an event may have at most {MAX_EVENT_BYTES}"),
        )
        .at(index));
    }
    Ok(())
}

/// How the body holds its events.
enum BodyKind {
    Json,
    Ndjson,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(BodyKind::Ndjson),
        "" => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request has no Content-Type; send application/json (an event or an array) or application/x-ndjson",
        )),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type `{other}` is not accepted; send application/json (an event or an array) or application/x-ndjson"
            ),
        )),
    }
}

const TOO_MANY: &str = "too many events";

/// A JSON array of raw events, refused as soon as it holds more than `.0` (so a body of a
/// million tiny items is not collected first).
struct BoundedArray(usize);

impl<'de> serde::de::DeserializeSeed<'de> for BoundedArray {
    type Value = Vec<&'de serde_json::value::RawValue>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BoundedArray {
    type Value = Vec<&'de serde_json::value::RawValue>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<&serde_json::value::RawValue>()? {
            if out.len() == self.0 {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            out.push(item);
        }
        Ok(out)
    }
}

fn invalid_event(index: usize, e: &blackbox_core::Error) -> ApiError {
    // Reserved types (FORMAT.md §3) are the service's to write: a client sending one is
    // refused as such.
    if blackbox_core::origin::refuses_reserved_type(e) {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_event_type",
            format!("event {index}: {e}"),
        )
        .at(index);
    }
    let code = match e {
        blackbox_core::Error::Json(_) => "invalid_json",
        _ => "invalid_event",
    };
    ApiError::bad_request(code, format!("event {index}: {e}")).at(index)
}

/// Splits and normalises the events of a request body. Every event is checked; the first bad
/// one refuses the request.
/// Events of a request, with what the detector needs of each.
type Parsed = (Vec<NormalizedEvent>, Vec<Features>);

fn parse_events(
    body: &[u8],
    kind: &BodyKind,
    state: &AppState,
    origin: &Origin,
) -> Result<Parsed, ApiError> {
    // The JSON parser checks UTF-8 itself; only a refused body is looked at again, to say so
    // precisely when that is why.
    let utf8_error = || {
        std::str::from_utf8(body).err().map(|e| {
            ApiError::bad_request(
                "invalid_utf8",
                format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
            )
        })
    };
    parse_valid_utf8(body, kind, state, origin).map_err(|e| utf8_error().unwrap_or(e))
}

fn parse_valid_utf8(
    body: &[u8],
    kind: &BodyKind,
    state: &AppState,
    origin: &Origin,
) -> Result<Parsed, ApiError> {
    let max = state.config.max_events_per_request;
    let rules = state.rules.get();
    let mut features = Vec::new();
    // The one normaliser of every way in (blackbox_ledger::appender). The tenant is checked by
    // the handler afterwards, so that a refusal for another tenant is recorded as a denial.
    let normaliser = Normaliser {
        policy: &state.policy,
        bound: state.clock,
        now_ms: crate::now_ms(),
        tenant: None,
        rules: Some(&rules),
    };
    let mut norm = |text: &[u8], i: usize, out: &mut Vec<NormalizedEvent>| {
        let n = normaliser
            .normalise(Intake {
                body: IntakeBody::Json(text),
                origin,
            })
            .map_err(|r| match r {
                Refusal::Event(e) => invalid_event(i, &e),
                Refusal::Clock { message, .. } => ApiError::unprocessable(
                    "timestamp_out_of_bound",
                    format!("event {i}: {message}"),
                )
                .at(i),
                Refusal::TooLarge { len, .. } => match check_event_size(i, len) {
                    Err(e) => e,
                    Ok(()) => invalid_event(i, &blackbox_core::Error::Json(r.to_string())),
                },
                // Not asked for (no tenant given); any later kind of refusal reads as invalid.
                _ => ApiError::bad_request("invalid_event", format!("event {i}: {r}")).at(i),
            })?;
        out.push(n.event);
        features.push(n.features);
        Ok::<(), ApiError>(())
    };
    let too_many = |n: usize| {
        ApiError::bad_request(
            "too_many_events",
            format!("the request holds {n} events or more; send at most {max} per request"),
        )
    };
    let mut out = Vec::new();
    match kind {
        BodyKind::Ndjson => {
            for line in body.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if out.len() >= max {
                    return Err(too_many(out.len() + 1));
                }
                let i = out.len();
                check_event_size(i, line.len())?;
                norm(line, i, &mut out)?;
            }
        }
        BodyKind::Json => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'[') {
                let mut de = serde_json::Deserializer::from_slice(body);
                let items = serde::de::DeserializeSeed::deserialize(BoundedArray(max), &mut de)
                    .and_then(|items| de.end().map(|()| items))
                    .map_err(|e| {
                        if e.to_string().starts_with(TOO_MANY) {
                            too_many(max + 1)
                        } else {
                            ApiError::bad_request(
                                "invalid_json",
                                format!("the body is not a JSON array of events: {e}"),
                            )
                        }
                    })?;
                for (i, raw) in items.iter().enumerate() {
                    check_event_size(i, raw.get().len())?;
                    norm(raw.get().as_bytes(), i, &mut out)?;
                }
            } else {
                check_event_size(0, body.len())?;
                norm(body, 0, &mut out)?;
            }
        }
    }
    if out.is_empty() {
        return Err(ApiError::bad_request(
            "empty_body",
            "the request holds no events",
        ));
    }
    Ok((out, features))
}

/// `POST /v1/events`.
pub(super) async fn append(
    State(state): State<AppState>,
    caller: Caller<Ingest>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(tenant) = caller.token.tenant_id.clone() else {
        return Err(caller.forbidden(
            "an admin token without a tenant cannot write events; use an ingest token of the tenant",
        ));
    };
    let origin = caller
        .token
        .origin("events")
        .map_err(|e| ApiError::forbidden(format!("the token cannot be named in entries: {e}")))?;
    let refused = |e: &ApiError| state.metrics.refuse(&tenant, e.code);
    let kind = body_kind(&headers).inspect_err(refused)?;
    let _share = body_share(&state, &caller, &tenant, &headers)?;
    let body = read_body(body, state.config.body_limit)
        .await
        .inspect_err(refused)?;
    let (mut events, features) =
        parse_events(&body, &kind, &state, &origin).inspect_err(refused)?;
    drop(body);
    // The tenant comes from the token: an event naming another one refuses the whole request.
    for (i, ev) in events.iter().enumerate() {
        if let Some(t) = &ev.tenant_id
            && t.as_str() != tenant
        {
            let e = ApiError::forbidden(format!(
                "event {i} names tenant `{t}` but this token writes to tenant `{tenant}`; nothing was written"
            ))
            .at(i);
            caller.deny(&e, Some(t.as_str()));
            return Err(e);
        }
    }
    let tenant_id = TenantId::parse(&tenant)
        .map_err(|e| ApiError::forbidden(format!("the token's tenant is invalid: {e}")))?;
    // Set here, on the request's thread, rather than by the (sequential) writer.
    for ev in &mut events {
        if ev.tenant_id.is_none() {
            ev.tenant_id = Some(tenant_id.clone());
        }
    }
    let appended = state.ingest.submit(tenant_id, events, features).await?;
    Ok(json_text(answer(
        &tenant,
        appended.iter().map(|a| (a.entry_id, a.seq, &a.entry_hash)),
    )))
}

/// The answer's text: [`blackbox_api::events::IngestResponse`] as serde writes it, written directly because it is as
/// long as the request (one member per event).
fn answer<'a>(
    tenant: &str,
    entries: impl ExactSizeIterator<Item = (uuid::Uuid, u64, &'a blackbox_core::Hash)>,
) -> String {
    let mut out = String::with_capacity(64 + entries.len() * 160);
    out.push_str("{\"tenant_id\":");
    out.push_str(&serde_json::to_string(&tenant).unwrap_or_default());
    out.push_str(",\"count\":");
    out.push_str(&entries.len().to_string());
    out.push_str(",\"entries\":[");
    for (i, (entry_id, seq, entry_hash)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"entry_id\":\"");
        out.push_str(
            entry_id
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
        out.push_str("\",\"seq\":");
        out.push_str(&seq.to_string());
        out.push_str(",\"entry_hash\":\"");
        out.push_str(&entry_hash.to_prefixed());
        out.push_str("\"}");
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use blackbox_api::events::{EntryRef, IngestResponse};

    #[test]
    fn the_answer_is_the_api_type_as_serde_writes_it() {
        let h = blackbox_core::Hash::digest(b"x");
        let id = uuid::Uuid::now_v7();
        let text = answer("ac\"me", [(id, 7, &h), (id, 8, &h)].into_iter());
        let want = IngestResponse {
            tenant_id: "ac\"me".into(),
            count: 2,
            entries: [7, 8]
                .map(|seq| EntryRef {
                    entry_id: id.to_string(),
                    seq,
                    entry_hash: h.to_prefixed(),
                })
                .to_vec(),
        };
        assert_eq!(text, serde_json::to_string(&want).unwrap());
    }
}
