//! The appender: the one way in. Every intake (the CLI's `append`, the service's `/v1/events`,
//! `/v1/decide` and operator actions, and later OTLP spans and MCP calls) hands its events here.
//!
//! The walk of an event, one way only:
//!
//! 1. **Normalise** ([`Normaliser`]): an event's JSON, as received or built by the intake, and
//!    who supplied it (an [`Intake`] with its [`Origin`]) become a [`NormalizedEvent`]:
//!    validated, redacted, canonical (RFC 8785), its claimed time checked against the writer's
//!    clock ([`ClockBound`]), bound to the caller's tenant; raw content is scanned for the
//!    rules' patterns here ([`Features`]) and then dropped. Pure and parallel: the CLI runs it on
//!    every core (rayon), the service on its request handlers.
//! 2. **Detect** ([`Appender::add`]): the detector, when there is one (the service), counts the
//!    event and says which rules fire; the payloads of the entries that answer them are built in
//!    `blackbox_detect::record`.
//! 3. **Sequence and sign** ([`crate::writer::AppendSink::add`], in `writer.rs`: the one place
//!    where an entry gets its `seq`, id, previous hash and HMAC): the event, then what it fired.
//! 4. **Commit** ([`crate::writer::AppendSink::commit`]): one all-or-nothing batch with the chain
//!    heads, Merkle nodes and due checkpoints; the service commits a group of requests at once.
//!
//! The time comes from one [`crate::clock::Clock`], the writer's ([`AppendSink::now_ms`]).

use std::sync::Arc;

use blackbox_core::entry::{ClockBound, NormalizedEvent, RedactionPolicy};
use blackbox_core::event::Node;
use blackbox_core::ids::TenantId;
use blackbox_core::origin::Origin;
use blackbox_detect::rules::{Action, RuleSet};
use blackbox_detect::{Detector, Features, Firing, Observation, record};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::error::LedgerError;
use crate::writer::{AppendSink, Appended};

pub use blackbox_detect::record::DETECTION_EVENTS;

/// One event as a way in receives it: its JSON and who supplied it.
#[derive(Debug, Clone, Copy)]
pub struct Intake<'a> {
    /// The event.
    pub body: Body<'a>,
    /// Who supplied it (sealed in the entry): an intake names itself in `via`.
    pub origin: &'a Origin,
}

/// An event's JSON: as received, or built by an intake that translates another format (an
/// OpenTelemetry span, an MCP call) into a Blackbox event.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// JSON text (one object), as received.
    Json(&'a [u8]),
    /// A JSON value the intake built.
    Value(&'a Value),
}

impl<'a> Intake<'a> {
    /// An event received as JSON text.
    #[must_use]
    pub fn json(raw: &'a [u8], origin: &'a Origin) -> Self {
        Self {
            body: Body::Json(raw),
            origin,
        }
    }

    /// An event the intake built as a JSON value.
    #[must_use]
    pub fn value(value: &'a Value, origin: &'a Origin) -> Self {
        Self {
            body: Body::Value(value),
            origin,
        }
    }
}

/// Why the normaliser refused an event. Nothing of it is appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The event is larger than any event may be.
    #[error("the line is longer than {max} bytes; events must be smaller")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The largest accepted.
        max: usize,
    },
    /// Not a valid event (JSON, fields, reserved types).
    #[error(transparent)]
    Event(#[from] blackbox_core::Error),
    /// Its claimed time is outside the writer's clock bound, which refuses such events.
    #[error("{message}")]
    Clock {
        /// The claimed time, Unix ms.
        claimed_ms: i64,
        /// The writer's time, Unix ms.
        now_ms: i64,
        /// What the bound says (how far off, and the bound).
        message: String,
    },
    /// It names another tenant than the one the caller appends for.
    #[error("field `tenant_id` is `{named}` but the caller appends for tenant `{bound}`")]
    OtherTenant {
        /// The tenant the event names.
        named: TenantId,
        /// The caller's tenant.
        bound: TenantId,
    },
}

/// An event ready for the writer, with what the detector needs of it.
#[derive(Debug)]
pub struct Normalised {
    /// The event.
    pub event: NormalizedEvent,
    /// Its features (pattern hits on the raw content); default when no rules were given.
    pub features: Features,
}

/// Stage 1: the rules every event of one intake is normalised with.
#[derive(Debug, Clone)]
pub struct Normaliser<'a> {
    /// Redaction lists.
    pub policy: &'a RedactionPolicy,
    /// How far a claimed time may lie from the writer's clock.
    pub bound: ClockBound,
    /// The writer's time for the bound, Unix ms (one reading per batch).
    pub now_ms: i64,
    /// The tenant the caller appends for (a token's, `--tenant-id`): events naming none get it,
    /// events naming another are refused.
    pub tenant: Option<&'a TenantId>,
    /// The rules whose patterns are looked for in raw content (none: no features).
    pub rules: Option<&'a RuleSet>,
}

/// Normalises one event and reads what the detector needs from it (raw content is scanned here,
/// before it is hashed, and nothing of it is kept). The size, clock and tenant checks are the
/// caller's ([`Normaliser::normalise`] does them all).
///
/// # Errors
/// As [`blackbox_core::event::normalize`].
pub fn normalize_with_features(
    text: &[u8],
    policy: &RedactionPolicy,
    rules: &RuleSet,
    origin: &Origin,
) -> Result<(NormalizedEvent, Features), blackbox_core::Error> {
    let node: Node<'_> = blackbox_core::json::read(text)?;
    let mut features = Features::default();
    let ev = blackbox_core::event::normalize_inspect(
        node,
        policy,
        origin,
        &mut |event_type, payload| {
            features.fill(event_type, payload, &rules.patterns);
        },
    )?;
    Ok((ev, features))
}

impl Normaliser<'_> {
    /// Normalises one event: size, JSON and fields, redaction, the clock bound, the tenant.
    ///
    /// # Errors
    /// [`Refusal`].
    pub fn normalise(&self, item: Intake<'_>) -> Result<Normalised, Refusal> {
        let built;
        let raw = match item.body {
            Body::Json(raw) => raw,
            Body::Value(v) => {
                // Read back like text received, so both kinds pass the same checks.
                built = serde_json::to_vec(v)
                    .map_err(|e| Refusal::Event(blackbox_core::Error::Json(e.to_string())))?;
                &built
            }
        };
        let max = blackbox_core::json::MAX_EVENT_BYTES;
        if raw.len() > max {
            return Err(Refusal::TooLarge {
                len: raw.len(),
                max,
            });
        }
        let (mut event, features) = match self.rules {
            Some(rules) => normalize_with_features(raw, self.policy, rules, item.origin)?,
            None => (
                blackbox_core::event::normalize_json(raw, self.policy, item.origin)?,
                Features::default(),
            ),
        };
        self.admit(&mut event)?;
        Ok(Normalised { event, features })
    }

    /// Normalises an event an intake built as the normaliser's tree itself ([`Node`], its
    /// strings borrowing from what the intake decoded: an OpenTelemetry span), without the
    /// detour through JSON text. The tree must hold what [`blackbox_core::json::read`] would
    /// give (objects sorted by key, keys unique, numbers finite); the checks that follow are
    /// [`Normaliser::normalise`]'s, the size checked on the normalised event (its payload, once
    /// content is hashed, within the 1 MiB an event may have).
    ///
    /// # Errors
    /// [`Refusal`].
    pub fn normalise_node(&self, node: Node<'_>, origin: &Origin) -> Result<Normalised, Refusal> {
        let mut features = Features::default();
        let mut event = match self.rules {
            Some(rules) => blackbox_core::event::normalize_inspect(
                node,
                self.policy,
                origin,
                &mut |event_type, payload| {
                    features.fill(event_type, payload, &rules.patterns);
                },
            )?,
            None => {
                blackbox_core::event::normalize_inspect(node, self.policy, origin, &mut |_, _| {})?
            }
        };
        let max = blackbox_core::json::MAX_EVENT_BYTES;
        if event.payload_jcs.len() > max {
            return Err(Refusal::TooLarge {
                len: event.payload_jcs.len(),
                max,
            });
        }
        self.admit(&mut event)?;
        Ok(Normalised { event, features })
    }

    /// The clock bound and the tenant, for an event just normalised.
    fn admit(&self, event: &mut NormalizedEvent) -> Result<(), Refusal> {
        self.bound
            .admit(event.timestamp_ms, self.now_ms)
            .map_err(|message| Refusal::Clock {
                claimed_ms: event.timestamp_ms.unwrap_or_default(),
                now_ms: self.now_ms,
                message,
            })?;
        match (&event.tenant_id, self.tenant) {
            (Some(t), Some(want)) if t != want => {
                return Err(Refusal::OtherTenant {
                    named: t.clone(),
                    bound: want.clone(),
                });
            }
            (None, Some(want)) => event.tenant_id = Some(want.clone()),
            _ => {}
        }
        Ok(())
    }

    /// Normalises `items` in parallel, on every core; the results keep the items' order.
    #[must_use]
    pub fn normalise_all(&self, items: &[Intake<'_>]) -> Vec<Result<Normalised, Refusal>> {
        items.par_iter().map(|i| self.normalise(*i)).collect()
    }
}

/// An entry the service wrote itself (detection, operator actions), for webhooks and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Chain.
    pub tenant: String,
    /// Its seq.
    pub seq: u64,
    /// Event type.
    pub event_type: &'static str,
    /// Rule, for anomalies.
    pub rule: Option<String>,
}

/// The envelope of an event being evaluated, or of an entry the service writes.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Agent.
    pub agent: &'a str,
    /// Session.
    pub session: &'a str,
}

/// The entry that fired rules.
#[derive(Debug, Clone, Copy)]
pub struct Trigger<'a> {
    /// Its envelope.
    pub who: Subject<'a>,
    /// Its id.
    pub entry: uuid::Uuid,
    /// It is a call decided at `/v1/decide` (so a block was enforced).
    pub at_decide: bool,
}

/// Stages 2 and 3: detection, then sequencing and signing through the sink. Holds the buffers
/// of one writer (what fired, what the service wrote since [`Appender::take_written`]).
#[derive(Debug, Default)]
pub struct Appender {
    firings: Vec<Firing>,
    written: Vec<Written>,
}

/// An event the service builds itself turned out invalid (a bug, not bad input).
fn own_event(e: blackbox_core::Error) -> LedgerError {
    LedgerError::Event { line: 0, source: e }
}

impl Appender {
    /// An appender with empty buffers.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// What fired on the last event evaluated.
    #[must_use]
    pub fn firings(&self) -> &[Firing] {
        &self.firings
    }

    /// The entries the service wrote itself since the last call (their commit is the caller's
    /// to wait for).
    pub fn take_written(&mut self) -> Vec<Written> {
        std::mem::take(&mut self.written)
    }

    /// The entries the service wrote itself since [`Appender::take_written`].
    #[must_use]
    pub fn written(&self) -> &[Written] {
        &self.written
    }

    /// Forgets the entries written since the last [`Appender::take_written`] (their batch was
    /// rolled back).
    pub fn forget_written(&mut self) {
        self.written.clear();
    }

    /// Appends one event: without a detector, sequenced and signed as it is; with one, counted
    /// and evaluated first, then appended, then followed by what it fired (alerts, pauses,
    /// throttles, the built-in `clock_skew` alert), all in the sink's open batch.
    ///
    /// # Errors
    /// The sink failed (the batch is then to be dropped).
    pub fn add(
        &mut self,
        sink: &mut AppendSink<'_>,
        detector: Option<&mut Detector>,
        ev: &NormalizedEvent,
        features: Option<&Features>,
        now: i64,
    ) -> Result<Appended, LedgerError> {
        let Some(det) = detector else {
            return sink.add(ev, now);
        };
        let tenant = ev.tenant_id.as_ref().map_or("", |t| t.as_str());
        let ts = ev
            .timestamp_ms
            .unwrap_or(now)
            .min(now.saturating_add(60_000));
        self.firings.clear();
        let skip = DETECTION_EVENTS.contains(&ev.event_type.as_str());
        if let (Some(f), false) = (features, skip) {
            let ob = Observation {
                tenant,
                agent: ev.agent_id.as_str(),
                session: ev.session_id.as_str(),
                event_type: ev.event_type.as_str(),
                // Rules scoped by tool count calls: a `tool_result` (indexed by its tool too, for
                // queries) is not another call.
                tool: ev
                    .tool
                    .as_deref()
                    .filter(|_| ev.event_type.as_str() == "tool_call"),
                ts_ms: ts,
                features: f,
            };
            det.observe(&ob, &mut self.firings);
        }
        let a = sink.add(ev, now)?;
        if skip {
            return Ok(a);
        }
        det.note_entry(tenant, ev.agent_id.as_str(), ts, a.entry_id);
        self.clock_skew_alert(sink, det, ev, &a, now)?;
        if !self.firings.is_empty() {
            let who = Subject {
                tenant,
                agent: ev.agent_id.as_str(),
                session: ev.session_id.as_str(),
            };
            let t = Trigger {
                who,
                entry: a.entry_id,
                at_decide: false,
            };
            self.record_firings(sink, det, t, now)?;
        }
        Ok(a)
    }

    /// Evaluates a call asked about at `/v1/decide` (not yet appended): what fires is left in
    /// [`Appender::firings`].
    pub fn evaluate(&mut self, det: &mut Detector, ob: &Observation<'_>) -> &[Firing] {
        self.firings.clear();
        det.observe(ob, &mut self.firings);
        &self.firings
    }

    /// Appends an entry the service writes itself (detection, operator actions), normalised with
    /// the service's origin, and notes it for webhooks and metrics.
    ///
    /// # Errors
    /// The sink failed, or the event is invalid (a bug).
    pub fn add_system(
        &mut self,
        sink: &mut AppendSink<'_>,
        who: Subject<'_>,
        (event_type, rule): (&'static str, Option<&str>),
        payload: Value,
        now: i64,
    ) -> Result<Appended, LedgerError> {
        let ev = json!({
            "tenant_id": who.tenant,
            "agent_id": who.agent,
            "session_id": who.session,
            "event_type": event_type,
            "payload": payload,
        });
        let ev = blackbox_core::event::normalize_json(
            ev.to_string().as_bytes(),
            &RedactionPolicy::default(),
            &Origin::Service,
        )
        .map_err(own_event)?;
        let a = sink.add(&ev, now)?;
        self.written.push(Written {
            tenant: who.tenant.to_owned(),
            seq: a.seq,
            event_type,
            rule: rule.map(str::to_owned),
        });
        Ok(a)
    }

    /// Appends what the last evaluation fired, after the entry that fired it: an
    /// `anomaly_detected` entry per alert not suppressed, then `agent_paused` /
    /// `agent_throttled` when the agent's state changes.
    ///
    /// # Errors
    /// The sink failed.
    pub fn record_firings(
        &mut self,
        sink: &mut AppendSink<'_>,
        det: &mut Detector,
        trigger: Trigger<'_>,
        now: i64,
    ) -> Result<(), LedgerError> {
        let Trigger {
            who,
            entry,
            at_decide,
        } = trigger;
        let rules = Arc::clone(det.rules());
        let firings = std::mem::take(&mut self.firings);
        let r = (|| {
            for f in &firings {
                let Some(rule) = rules.rules.get(f.rule) else {
                    continue;
                };
                // A signal only adds to a score; a score rule that fired records it.
                if !rule.action.records() {
                    continue;
                }
                let mut anomaly_id = None;
                if !f.suppressed {
                    let payload = record::anomaly(&rules, rule, f, entry, at_decide);
                    let kind = ("anomaly_detected", Some(rule.name.as_str()));
                    anomaly_id = Some(self.add_system(sink, who, kind, payload, now)?.entry_id);
                }
                let by = record::by_rule(rule);
                match rule.action {
                    Action::AlertAndPause => {
                        if det.pause(who.tenant, who.agent, now, &by) {
                            let payload = record::paused(rule, anomaly_id);
                            let kind = ("agent_paused", Some(rule.name.as_str()));
                            self.add_system(sink, who, kind, payload, now)?;
                        }
                    }
                    Action::AlertAndThrottle => {
                        let until = now.saturating_add(rule.throttle_ms);
                        if det.throttle(
                            who.tenant,
                            who.agent,
                            now,
                            rule.throttle_per_minute,
                            until,
                            &by,
                        ) {
                            let payload = record::throttled(rule, anomaly_id, until);
                            let kind = ("agent_throttled", Some(rule.name.as_str()));
                            self.add_system(sink, who, kind, payload, now)?;
                        }
                    }
                    Action::Alert | Action::BlockAndAlert | Action::LogOnly | Action::Signal => {}
                }
            }
            Ok(())
        })();
        self.firings = firings;
        r
    }

    /// Raises the built-in `clock_skew` alert (FORMAT.md §14) when an agent's claimed time lay
    /// outside the writer's bound (`[clock]`), at most once per agent every 5 minutes.
    fn clock_skew_alert(
        &mut self,
        sink: &mut AppendSink<'_>,
        det: &mut Detector,
        ev: &NormalizedEvent,
        a: &Appended,
        now: i64,
    ) -> Result<(), LedgerError> {
        let bound = sink.writer().clock();
        let at = blackbox_core::entry::written_ms(a.entry_id.as_u128());
        let Some(skew) = ev.timestamp_ms.and_then(|c| bound.skew(c, at)) else {
            return Ok(());
        };
        let tenant = ev.tenant_id.as_ref().map_or("", |t| t.as_str());
        if !bound.alert
            || ev.origin.as_ref().is_some_and(Origin::is_service)
            || !det.clock_skew_due(tenant, ev.agent_id.as_str(), at)
        {
            return Ok(());
        }
        let payload = record::clock_skew(det.rules(), a.entry_id, skew, &bound);
        let who = Subject {
            tenant,
            agent: ev.agent_id.as_str(),
            session: ev.session_id.as_str(),
        };
        let kind = (
            "anomaly_detected",
            Some(blackbox_detect::detector::CLOCK_SKEW_RULE),
        );
        self.add_system(sink, who, kind, payload, now)?;
        Ok(())
    }
}
