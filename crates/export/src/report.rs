//! A report: a standard's control, its requirement and how the system meets it, the figures with
//! their methods, as a [`Document`] (for the PDF), JSON and CSV tables.

use serde::Serialize;

use crate::ExportError;
use crate::config::{ExportConfig, Gdpr};
use crate::doc::{Block, Document, Section};
use crate::figures::{Figures, Period};

/// A standard and control (or article) Blackbox reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Control {
    /// SOC 2 CC7.2, monitoring of system components.
    Soc2Cc72,
    /// ISO/IEC 27001:2022 Annex A 8.15, logging.
    Iso27001A815,
    /// GDPR Article 30, records of processing activities.
    GdprArt30,
    /// EU AI Act (Regulation (EU) 2024/1689) Article 12, record-keeping of high-risk AI systems.
    EuAiActArt12,
}

impl Control {
    /// From `--standard` and `--control` / `--article`.
    ///
    /// # Errors
    /// An unknown pair, naming the pairs that exist.
    pub fn parse(standard: &str, control: &str) -> Result<Self, ExportError> {
        let c = control.trim().to_ascii_lowercase();
        match (standard.trim().to_ascii_lowercase().as_str(), c.as_str()) {
            ("soc2", "cc7.2") => Ok(Self::Soc2Cc72),
            ("iso27001", "a.8.15" | "8.15") => Ok(Self::Iso27001A815),
            ("gdpr", "art30" | "art.30" | "30") => Ok(Self::GdprArt30),
            ("eu-ai-act" | "eu_ai_act", "art12" | "art.12" | "12") => Ok(Self::EuAiActArt12),
            (s, _) => Err(ExportError::Usage(format!(
                "no report for --standard {s} with control/article `{control}`; Blackbox reports on: --standard soc2 --control CC7.2, --standard iso27001 --control A.8.15, --standard gdpr --article art30, --standard eu-ai-act --article art12"
            ))),
        }
    }

    /// `soc2`, `iso27001`, `gdpr` or `eu-ai-act`.
    #[must_use]
    pub fn standard(self) -> &'static str {
        match self {
            Self::Soc2Cc72 => "soc2",
            Self::Iso27001A815 => "iso27001",
            Self::GdprArt30 => "gdpr",
            Self::EuAiActArt12 => "eu-ai-act",
        }
    }

    /// The retention preset of the standard (`export.toml`'s `retention.standards` names).
    #[must_use]
    pub fn retention_preset(self) -> &'static str {
        match self {
            Self::EuAiActArt12 => "eu_ai_act",
            other => other.standard(),
        }
    }

    /// `CC7.2`, `A.8.15`, `art30` or `art12`.
    #[must_use]
    pub fn control(self) -> &'static str {
        match self {
            Self::Soc2Cc72 => "CC7.2",
            Self::Iso27001A815 => "A.8.15",
            Self::GdprArt30 => "art30",
            Self::EuAiActArt12 => "art12",
        }
    }

    fn title(self) -> (&'static str, &'static str) {
        match self {
            Self::Soc2Cc72 => (
                "SOC 2 CC7.2 evidence",
                "Monitoring of system components for anomalies",
            ),
            Self::Iso27001A815 => ("ISO/IEC 27001:2022 A.8.15 evidence", "Logging"),
            Self::GdprArt30 => (
                "GDPR Article 30 record of processing activities",
                "AI agent processing, as configured and as observed in the audit log",
            ),
            Self::EuAiActArt12 => (
                "EU AI Act Article 12 record-keeping evidence",
                "Automatic recording of events over the lifetime of a high-risk AI system",
            ),
        }
    }

    fn requirement(self) -> &'static str {
        match self {
            Self::Soc2Cc72 => {
                "The entity monitors system components and the operation of those controls for anomalies that are indicative of malicious acts, natural disasters, and errors affecting the entity's ability to meet its objectives; anomalies are analysed to determine whether they represent security events (AICPA Trust Services Criteria, CC7.2)."
            }
            Self::Iso27001A815 => {
                "Logs that record activities, exceptions, faults and other relevant events should be produced, stored, protected and analysed (ISO/IEC 27001:2022, Annex A, control 8.15)."
            }
            Self::GdprArt30 => {
                "Each controller shall maintain a record of processing activities under its responsibility, containing the information listed in Article 30(1)(a) to (g), and make it available to the supervisory authority on request (Regulation (EU) 2016/679, Article 30)."
            }
            Self::EuAiActArt12 => {
                "High-risk AI systems shall technically allow for the automatic recording of events (logs) over the lifetime of the system; the logging capabilities shall enable the recording of events relevant for identifying situations that may result in the system presenting a risk within the meaning of Article 79(1) or in a substantial modification, for facilitating the post-market monitoring referred to in Article 72, and for monitoring the operation of the system referred to in Article 26(5) (Regulation (EU) 2024/1689, Article 12(1) and (2)). Providers keep the logs under their control (Article 19(1)) and deployers the logs under theirs (Article 26(6)) for a period appropriate to the intended purpose, of at least six months."
            }
        }
    }

    fn how_met(self) -> &'static str {
        match self {
            Self::Soc2Cc72 => {
                "Every action of the AI agents (model requests, tool calls, data access, decisions) is recorded by the Blackbox audit service as an entry of a hash-chained, HMAC-signed log with signed Merkle checkpoints. The service evaluates every entry against anomaly-detection rules as it is written (rates against each agent's own baseline, off-hours activity, injection patterns in tool arguments) and can block a call, pause or throttle an agent. Every detection is itself an entry of the chain; where webhooks are configured it is queued for delivery to the SIEM as a signed webhook, and the service's outbox records each delivery's outcome: the alert register below shows, per alert, whether it reached the SIEM, as the outbox recorded it."
            }
            Self::Iso27001A815 => {
                "Produced: every agent action is an entry recording who (tenant, agent, session, role), what (event type, tool, hashed arguments, result), when (UTC timestamp, ms) and where (the service, the chain and its sequence number). Stored: durably committed before it is acknowledged, in an append-only store. Protected: hash-chained, HMAC-signed with a key only the service holds, with Ed25519-signed Merkle checkpoints; raw prompts and arguments are replaced by hashes before storage. Analysed: evaluated in real time by anomaly-detection rules, queryable for forensics, verifiable end to end."
            }
            Self::GdprArt30 => {
                "The record below combines the processing activities declared by the controller (the export settings) with what the audit log observed in the period: which agents and tools processed which classes of data and, on request, how many data subjects of each category were concerned (counted from pseudonymous identifiers; no personal data is shown)."
            }
            Self::EuAiActArt12 => {
                "Every event of the AI agents (model requests, tool calls, data access, decisions, detections) is recorded automatically by the Blackbox audit service as it happens, without the agents' or operators' intervention, as an entry of a hash-chained, HMAC-signed log with signed Merkle checkpoints, from the system's first entry to its last: nothing can be removed or altered unseen, and the figures below are computed from the log itself. The service's own time (written_at) dates every entry; what an agent claims is kept apart. Anomaly detection runs on every entry, and every detection, enforcement (a blocked call, a paused or throttled agent) and rules change is itself an entry."
            }
        }
    }

    fn points_of_focus(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Self::Soc2Cc72 => vec![
                (
                    "Implements detection policies, procedures and tools",
                    "Anomaly-detection rules (rules file, hot-reloaded; each version recorded in the chain as rules_loaded) run inside the audit service on every entry and at every pre-call decision (/v1/decide).",
                ),
                (
                    "Designs detection measures",
                    "Metric rules compare each agent's rate of tool calls, model requests, tokens, errors and denied calls with its own 7-day baseline; time-window rules flag off-hours activity; pattern rules find injection attempts in tool arguments after Unicode normalisation and decoding.",
                ),
                (
                    "Implements filters to analyse anomalies",
                    "Rules are scoped by tenant, agent, role, tool and event type; repeated alerts are suppressed per rule and group; every alert names the entries that triggered it, so an analyst can trace it with blackbox query.",
                ),
                (
                    "Monitors detection tools for effective operation",
                    "The service exports metrics (decisions, detections, suppressed alerts, webhook deliveries and dead letters, rules reload failures); rules files are validated before they take effect and backtested with blackbox rules test; the log's own integrity is verified below.",
                ),
            ],
            Self::Iso27001A815 => vec![
                (
                    "Produced",
                    "Every agent action is an entry; completeness below measures what is missing.",
                ),
                (
                    "Stored",
                    "Entries are acknowledged only once durably committed; retention below.",
                ),
                (
                    "Protected",
                    "Hash chain, HMAC per entry, signed checkpoints; integrity below; raw content never stored.",
                ),
                (
                    "Analysed",
                    "Real-time anomaly detection; anomaly figures below.",
                ),
            ],
            Self::GdprArt30 => vec![],
            Self::EuAiActArt12 => vec![
                (
                    "Art. 12(1): automatic recording over the lifetime",
                    "Every event is recorded by the service as it is received or decided; the chain runs from the system's first entry (see Retention: the oldest entry kept) to the head verified below, with no gap a deletion could hide (Log completeness, Integrity). Export without --period to cover the whole lifetime.",
                ),
                (
                    "Art. 12(2)(a): situations that may present a risk (Art. 79(1)) or a substantial modification",
                    "Anomaly detections (injection patterns, unusual rates, off-hours access), blocked calls and paused or throttled agents, each with the entry that raised it (Alert register); every change of the detection rules (rules_loaded, Rules in force); the model and tool of every call are in its entry.",
                ),
                (
                    "Art. 12(2)(b): post-market monitoring (Art. 72)",
                    "The population by event type and day (Population, activity and sample), queryable by agent, session, tool and time (blackbox query), exportable as a verifiable log slice (blackbox export-log) that an independent verifier checks with the public key.",
                ),
                (
                    "Art. 12(2)(c): monitoring of the operation by the deployer (Art. 26(5))",
                    "Pre-call decisions (/v1/decide), alerts with their triage by people (who, when, disposition, ticket) and SIEM delivery, pause and resume of agents by operators (Alert register, Anomalies).",
                ),
                (
                    "Art. 12(3): remote biometric identification systems (Annex III, 1(a))",
                    "(a) the period of each use: each session's first and last entry (blackbox query --session-id); (b) the reference database, (c) the input data that led to a match and (d) the persons who verified the results (Art. 14(5)) are evidenced only where the system records them in its events (e.g. as tool arguments, stored as hashes, and the operator's identity); this report does not assert them.",
                ),
                (
                    "Art. 19(1) and 26(6): logs kept at least six months",
                    "Retention below, measured against the eu_ai_act preset (183 days) unless the organisation sets its own (retention.required_days).",
                ),
            ],
        }
    }
}

/// Everything a report says, for JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    /// `blackbox.evidence.v1`.
    pub format: &'static str,
    /// Standard.
    pub standard: &'static str,
    /// Control or article.
    pub control: &'static str,
    /// Title.
    pub title: &'static str,
    /// Organisation.
    pub organisation: &'a crate::config::Organisation,
    /// Who prepared and reviewed the report, and management's assertion (as configured).
    pub signoff: &'a crate::config::ReportSettings,
    /// How the control maps to the other frameworks, and where this report evidences each.
    pub framework_mapping: Vec<Mapping>,
    /// Period.
    pub period: &'a Period,
    /// The day the report was made (`YYYY-MM-DD`, UTC).
    pub report_date: String,
    /// When it was made, Unix ms (the PDF's creation date; not in the JSON, which stays the
    /// same for the same data on the same day).
    #[serde(skip)]
    pub generated_ms: i64,
    /// The control's requirement.
    pub requirement: &'static str,
    /// How the system meets it.
    pub how_met: &'static str,
    /// Points of focus and how each is met.
    pub points_of_focus: Vec<(&'static str, &'static str)>,
    /// Methods of the figures.
    pub methods: Methods,
    /// Figures.
    pub figures: &'a Figures,
    /// GDPR record (Art. 30).
    pub record_of_processing: Option<&'a Gdpr>,
    /// Export settings the report would print that are not set (`key: what it is`); empty when
    /// everything is configured.
    pub not_configured: Vec<String>,
    /// Whether the settings came from a file (false: no export.toml, every default).
    pub settings_file: bool,
    /// GDPR Art. 30: storage limitation per activity and the exceptions (declared against
    /// observed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gdpr_findings: Option<GdprFindings>,
}

/// How each figure is computed.
#[derive(Debug, Clone, Serialize)]
pub struct Methods {
    /// Completeness.
    pub completeness: &'static str,
    /// Integrity.
    pub integrity: String,
    /// Commands an auditor runs to re-verify.
    pub reverify: Vec<String>,
    /// Anomalies.
    pub anomalies: &'static str,
    /// Retention.
    pub retention: &'static str,
    /// Sample.
    pub sample: String,
}

fn methods(f: &Figures, data_dir_hint: &str) -> Methods {
    Methods {
        completeness: "Expected entries = entries present in the period + sequence numbers missing from the chain between the period's lowest and highest seq + the agents' own per-session counters (client_seq) missing between the lowest and highest received in each session, or up to the last_client_seq an agent reported in a heartbeat event. Completeness = present / expected. Limits of the method: entries an agent never sent before the first client_seq received in a session, or after the last one of a session that ends without a heartbeat, cannot be seen; nor can a whole session the agent never reported. The chain itself has no gap a deletion could hide (sequence numbers and hash links).",
        integrity: "The whole chain of the tenant was verified when the report was made: every entry's HMAC-SHA256 (by key id), every hash link to the previous entry, every checkpoint's Ed25519 signature and Merkle root. An auditor re-verifies independently with the commands below (the second needs only the exported log and the public key; tools/verify_jsonl.py in the Blackbox repository is an independent implementation of the same checks).".into(),
        reverify: vec![
            format!("blackbox verify --data-dir {data_dir_hint} --tenant-id {} --public-key checkpoint.pub", f.tenant_id),
            format!("blackbox export-log --data-dir {data_dir_hint} --tenant-id {} --output audit.jsonl", f.tenant_id),
            "blackbox verify --log-file audit.jsonl --public-key checkpoint.pub".into(),
        ],
        anomalies: "Count of anomaly_detected entries in the period, by rule and action. Resolved: alerts a person closed (an alert_resolved entry naming the alert, written by the service for an admin token or by the local CLI: true positive, false positive or accepted risk); a resume, a throttle or a blocked call does not resolve an alert.",
        retention: "Days the log reaches back: from the writer's date of the chain's first entry kept (in the store or its archive) to the report's as-of date, both days counted, where the as-of date is the earlier of the period's last day and the day the report was made (a period that ends in the future is not counted ahead). Measured against the required retention: the organisation's own (retention.required_days), else the strictest preset of the configured standards, else the standard's preset, each with its source.",
        sample: format!(
            "The entries of the population with the {} smallest SHA-256(seed, tenant, seq), listed in seq order: reproducible with the same seed (\"{}\"), independent of the order of reading. Trace each to the log with blackbox query or blackbox prove --entry-id.",
            f.sample.len(),
            f.sample_seed
        ),
    }
}

/// Builds the report.
#[must_use]
pub fn report<'a>(
    control: Control,
    config: &'a ExportConfig,
    period: &'a Period,
    figures: &'a Figures,
    generated_ms: i64,
) -> Report<'a> {
    let (title, _) = control.title();
    Report {
        report_date: blackbox_core::entry::format_timestamp(generated_ms)
            .unwrap_or_default()
            .get(..10)
            .unwrap_or_default()
            .to_owned(),
        generated_ms,
        format: "blackbox.evidence.v1",
        standard: control.standard(),
        control: control.control(),
        title,
        organisation: &config.organisation,
        signoff: &config.report,
        framework_mapping: framework_mapping(control),
        period,
        requirement: control.requirement(),
        how_met: control.how_met(),
        points_of_focus: control.points_of_focus(),
        methods: methods(figures, "DATA_DIR"),
        figures,
        record_of_processing: (control == Control::GdprArt30).then_some(&config.gdpr),
        not_configured: config.not_configured(control.standard()),
        settings_file: config.source.is_some(),
        gdpr_findings: (control == Control::GdprArt30)
            .then(|| gdpr_findings(&config.gdpr, figures)),
    }
}

fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn kv(pairs: &[(&str, String)]) -> Block {
    Block::KeyValues(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

/// The report as a document for the PDF.
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn document(r: &Report<'_>, control: Control) -> Document {
    let f = r.figures;
    let (title, subtitle) = control.title();
    let c = &f.completeness;
    let mut sections = Vec::new();
    let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
    if !r.not_configured.is_empty() {
        let mut rows: Vec<Vec<String>> = Vec::new();
        for line in &r.not_configured {
            let (key, what) = line.split_once(": ").unwrap_or((line.as_str(), ""));
            rows.push(vec![key.to_owned(), what.to_owned()]);
        }
        sections.push(Section {
            title: "Settings not configured".into(),
            blocks: vec![
                Block::Paragraph(format!(
                    "This report was made {} these settings, so it leaves them blank or uses the defaults said beside each figure. Set them in the export settings (DATA_DIR/export.toml; `blackbox export --print-config` prints an example) and export again.",
                    if r.settings_file { "with export settings that lack" } else { "without export settings (no export.toml), so without" }
                )),
                Block::Table {
                    columns: vec!["Setting".into(), "What it is".into()],
                    rows,
                    caption: None,
                },
            ],
        });
    }
    sections.push(Section {
        title: "Summary".into(),
        blocks: vec![kv(&[
            (
                "Log completeness",
                format!(
                    "{}% of expected entries present ({} of {}; gaps before a session's first counter or after its last without a heartbeat cannot be seen)",
                    c.percent,
                    n(c.present),
                    n(c.expected)
                ),
            ),
            (
                "Integrity",
                if f.integrity.after_checkpoint == 0 {
                    f.integrity.summary.clone()
                } else {
                    format!(
                        "{}; {} entries after the latest signed checkpoint",
                        f.integrity.summary,
                        n(f.integrity.after_checkpoint)
                    )
                },
            ),
            (
                "Anomaly count",
                format!(
                    "{} events flagged for review, {} resolved",
                    n(f.anomalies.total),
                    n(f.anomalies.resolved)
                ),
            ),
            ("Alert register", alert_summary(&f.alerts)),
            (
                "Retention compliance",
                format!(
                    "the log reaches back {} as of {} (required: {} days) — {}",
                    count_of(f.retention.oldest_age_days, "day", "days"),
                    f.retention.as_of,
                    n(f.retention.required_days),
                    verdict(f.retention.met)
                ),
            ),
            (
                "Population",
                format!(
                    "{} entries, {} agents, {} sessions",
                    n(f.population.entries),
                    n(f.population.agents),
                    n(f.population.sessions)
                ),
            ),
        ])],
    });
    let assertion = r.signoff.management_assertion.trim();
    sections.push(Section {
        title: "Management's assertion".into(),
        blocks: vec![
            Block::Paragraph(if assertion.is_empty() {
                "[Management's assertion about the design and operation of the control over the period, to be provided by management (report.management_assertion in the export settings).]".into()
            } else {
                assertion.to_owned()
            }),
            kv(&[
                ("Prepared by", or_unset(&r.signoff.preparer)),
                ("Reviewed by", or_unset(&r.signoff.reviewer)),
                ("Report date", r.report_date.clone()),
                ("Signature", String::new()),
            ]),
        ],
    });
    let mut req = vec![
        Block::Paragraph(r.requirement.into()),
        Block::Subheading("How the system meets it".into()),
        Block::Paragraph(r.how_met.into()),
    ];
    if !r.points_of_focus.is_empty() {
        req.push(Block::Table {
            columns: if control == Control::EuAiActArt12 {
                vec![
                    "What the Regulation asks".into(),
                    "What the log evidences".into(),
                ]
            } else {
                vec!["Point of focus".into(), "How it is met".into()]
            },
            rows: r
                .points_of_focus
                .iter()
                .map(|(a, b)| vec![(*a).to_owned(), (*b).to_owned()])
                .collect(),
            caption: None,
        });
    }
    if control == Control::Iso27001A815 {
        req.push(Block::Subheading("What each entry records".into()));
        req.push(Block::Table {
            columns: vec!["Question".into(), "Entry fields".into()],
            rows: vec![
                vec!["Who".into(), "tenant_id, agent_id, session_id; payload agent_role and authorization.rbac_role".into()],
                vec!["What".into(), "event_type; tool_name, args (raw values as SHA-256), result (rows_returned, result_hash, data_classification), authorization (allowed, policy_matched, decision)".into()],
                vec!["When".into(), "timestamp (RFC 3339 UTC, milliseconds); entry_id (UUIDv7, ordered); the agent's client_seq".into()],
                vec!["Where".into(), "the tenant's chain and its seq, prev_entry_hash (the link), key_id and hmac_sha256 (the seal), the signed checkpoint covering it".into()],
            ],
            caption: None,
        });
    }
    sections.push(Section {
        title: "The control and how it is met".into(),
        blocks: req,
    });
    sections.push(Section {
        title: "Cross-framework mapping".into(),
        blocks: vec![
            Block::Paragraph(
                "The same evidence answers related requirements of other frameworks; this is Blackbox's reading of their texts, for the auditor to confirm.".into(),
            ),
            Block::Table {
                columns: vec![
                    "Requirement".into(),
                    "What it asks".into(),
                    "Evidence in this report".into(),
                ],
                rows: r
                    .framework_mapping
                    .iter()
                    .map(|m| {
                        vec![
                            m.requirement.to_owned(),
                            m.asks.to_owned(),
                            m.evidence.to_owned(),
                        ]
                    })
                    .collect(),
                caption: None,
            },
        ],
    });
    if let (Some(g), Some(findings)) = (r.record_of_processing, &r.gdpr_findings) {
        gdpr_sections(&mut sections, g, f, findings);
    }
    let mut comp = vec![
        Block::Paragraph(r.methods.completeness.into()),
        kv(&[
            ("Present", n(c.present)),
            ("Missing from the chain", n(c.chain_missing)),
            ("Missing from agents' sessions", n(c.session_missing)),
            ("Duplicated client_seq", n(c.session_duplicates)),
            ("Sessions checked", n(c.sessions_checked)),
            ("Completeness", format!("{}%", c.percent)),
        ]),
    ];
    if !c.gaps.is_empty() {
        comp.push(Block::Table {
            columns: vec![
                "Kind".into(),
                "Agent".into(),
                "Session".into(),
                "Missing".into(),
                "Count".into(),
            ],
            rows: c
                .gaps
                .iter()
                .map(|g| {
                    vec![
                        g.kind.to_owned(),
                        g.agent_id.clone().unwrap_or_default(),
                        g.session_id.clone().unwrap_or_default(),
                        if g.from == g.to {
                            g.from.to_string()
                        } else {
                            format!("{}–{}", g.from, g.to)
                        },
                        n(g.to - g.from + 1),
                    ]
                })
                .collect(),
            caption: Some(format!("{} gap(s) in all.", n(c.gaps_total))),
        });
    }
    sections.push(Section {
        title: "Log completeness".into(),
        blocks: comp,
    });
    let i = &f.integrity;
    let mut integ = vec![
        Block::Paragraph(r.methods.integrity.clone()),
        Block::Code(r.methods.reverify.join("\n")),
        kv(&[
            ("Verdict", i.summary.clone()),
            ("Entries verified", n(i.entries_verified)),
            (
                "HMACs by key id",
                i.hmac_by_key
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", n(*v)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "Checkpoints verified",
                format!(
                    "{} (largest tree size {})",
                    n(i.checkpoints_verified),
                    n(i.largest_checkpoint)
                ),
            ),
            ("Chain head", i.head.clone()),
            ("Merkle root", i.root.clone()),
            ("Public key", i.public_key.clone()),
            ("Key fingerprint", i.public_key_fingerprint.clone()),
        ]),
    ];
    if let Some(cp) = &i.checkpoint {
        integ.push(Block::Subheading("Latest signed checkpoint".into()));
        integ.push(Block::Code(cp.note.clone()));
    }
    integ.push(Block::Paragraph(after_checkpoint_text(i)));
    if !i.findings.is_empty() {
        integ.push(Block::Table {
            columns: vec!["Finding".into()],
            rows: i.findings.iter().map(|x| vec![x.clone()]).collect(),
            caption: None,
        });
    }
    sections.push(Section {
        title: "Integrity".into(),
        blocks: integ,
    });
    let a = &f.anomalies;
    sections.push(Section {
        title: "Anomalies".into(),
        blocks: vec![
            Block::Paragraph(r.methods.anomalies.into()),
            Block::Table {
                columns: vec![
                    "Rule".into(),
                    "Action".into(),
                    "Severity".into(),
                    "Flagged".into(),
                    "Resolved".into(),
                ],
                rows: a
                    .by_rule
                    .iter()
                    .map(|x| {
                        vec![
                            x.rule.clone(),
                            x.action.clone(),
                            x.severity.clone(),
                            n(x.count),
                            n(x.resolved),
                        ]
                    })
                    .collect(),
                caption: Some(format!(
                    "{} flagged, {} resolved; {} agent pause(s) and {} resume(s) in the period.",
                    n(a.total),
                    n(a.resolved),
                    n(a.paused),
                    n(a.resumed)
                )),
            },
        ],
    });
    alert_sections(&mut sections, &f.alerts, control);
    let rt = &f.retention;
    sections.push(Section {
        title: "Retention".into(),
        blocks: vec![
            Block::Paragraph(r.methods.retention.into()),
            kv(&[
                (
                    "Oldest entry kept",
                    rt.oldest_entry.clone().unwrap_or_default(),
                ),
                ("As of", rt.as_of.clone()),
                (
                    "Days the log reaches back",
                    format!("{} days (both days counted)", n(rt.oldest_age_days)),
                ),
                (
                    "Required",
                    format!("{} days ({})", n(rt.required_days), rt.requirement),
                ),
                ("Result", verdict(rt.met).into()),
            ]),
        ],
    });
    let p = &f.population;
    let mut pop = vec![
        Block::Paragraph(format!(
            "Population: every entry of the tenant's chain that the service wrote in the period (its writer time, not the time an agent claims), or every entry by seq for a whole-log export. Query: {}.",
            p.query
        )),
        kv(&[
            ("Entries", n(p.entries)),
            ("Agents", n(p.agents)),
            ("Sessions", n(p.sessions)),
            (
                "Seq range",
                p.seq_range
                    .map_or_else(String::new, |(a, b)| format!("{a}–{b}")),
            ),
        ]),
        Block::Table {
            columns: vec!["Event type".into(), "Entries".into()],
            rows: p
                .by_event_type
                .iter()
                .map(|(k, v)| vec![k.clone(), n(*v)])
                .collect(),
            caption: None,
        },
        Block::Chart {
            title: "Entries and anomalies per day".into(),
            days: f.daily.iter().map(|d| d.date.clone()).collect(),
            series: vec![
                (
                    "entries".into(),
                    f.daily.iter().map(|d| d.entries).collect(),
                ),
                (
                    "anomalies".into(),
                    f.daily.iter().map(|d| d.anomalies).collect(),
                ),
            ],
        },
        Block::Subheading(if control == Control::Soc2Cc72 {
            "Random sample of entries (the alerts' sample is in the alert tests)".into()
        } else {
            "Random sample of entries".into()
        }),
        Block::Paragraph(r.methods.sample.clone()),
        // Two tables, so that every id and time stays whole (a copied id is exact).
        Block::Table {
            columns: vec!["Seq".into(), "Entry id".into(), "Written".into()],
            rows: f
                .sample
                .iter()
                .map(|s| vec![s.seq.to_string(), s.entry_id.clone(), s.timestamp.clone()])
                .collect(),
            caption: None,
        },
        Block::Table {
            columns: vec![
                "Seq".into(),
                "Agent".into(),
                "Event".into(),
                "Tool".into(),
                "Decision".into(),
                "Origin".into(),
            ],
            rows: f
                .sample
                .iter()
                .map(|s| {
                    vec![
                        s.seq.to_string(),
                        s.agent_id.clone(),
                        s.event_type.clone(),
                        s.tool.clone(),
                        s.decision.clone(),
                        s.origin.clone(),
                    ]
                })
                .collect(),
            caption: Some(
                "Every column of the sample is in the .sample.csv table and the JSON.".into(),
            ),
        },
    ];
    if !p.by_tool.is_empty() {
        pop.insert(
            3,
            Block::Table {
                columns: vec!["Tool".into(), "Calls".into()],
                rows: p
                    .by_tool
                    .iter()
                    .map(|(k, v)| vec![k.clone(), n(*v)])
                    .collect(),
                caption: None,
            },
        );
    }
    sections.push(Section {
        title: "Population, activity and sample".into(),
        blocks: pop,
    });
    Document {
        lang: "en".into(),
        created_ms: r.generated_ms,
        attachments: Vec::new(),
        title: title.into(),
        subtitle: subtitle.into(),
        cover: vec![
            ("Organisation".into(), or_unset(&r.organisation.name)),
            ("System".into(), or_unset(&r.organisation.system)),
            ("Contact".into(), or_unset(&r.organisation.contact)),
            (
                "Period".into(),
                format!(
                    "{} to {} (UTC, both days included)",
                    r.period.start, r.period.end
                ),
            ),
            ("Tenant".into(), f.tenant_id.clone()),
            ("Scope".into(), scope(&f.population)),
            ("Report date".into(), r.report_date.clone()),
            ("Prepared by".into(), or_unset(&r.signoff.preparer)),
            ("Reviewed by".into(), or_unset(&r.signoff.reviewer)),
            (
                "Evidence from".into(),
                "Blackbox tamper-evident audit log".into(),
            ),
            (
                "Checkpoint".into(),
                f.integrity
                    .checkpoint
                    .as_ref()
                    .map_or_else(String::new, |c| {
                        format!("tree size {} signed {}", n(c.size), c.timestamp)
                    }),
            ),
        ],
        header: format!(
            "{} — {} — {} to {}",
            or_unset(&r.organisation.name),
            title,
            r.period.start,
            r.period.end
        ),
        sections,
    }
}

/// One requirement of a framework and where the report evidences it.
#[derive(Debug, Clone, Serialize)]
pub struct Mapping {
    /// The framework and clause, e.g. "ISO/IEC 27001:2022 A.8.16".
    pub requirement: &'static str,
    /// What it asks, in short.
    pub asks: &'static str,
    /// The sections of this report that evidence it.
    pub evidence: &'static str,
}

/// The cross-framework mapping (Blackbox's reading of the texts; the auditor decides).
fn framework_mapping(control: Control) -> Vec<Mapping> {
    let m = |requirement, asks, evidence| Mapping {
        requirement,
        asks,
        evidence,
    };
    let mut out = vec![
        m(
            "AICPA TSC CC7.2",
            "Monitor system components for anomalies and analyse them",
            "Alert register; Alert tests and exceptions; Anomalies",
        ),
        m(
            "ISO/IEC 27001:2022 A.8.15",
            "Logs produced, stored, protected and analysed",
            "Log completeness; Integrity; Retention; Population",
        ),
        m(
            "ISO/IEC 27001:2022 A.8.16",
            "Monitoring activities: anomalous behaviour detected and acted on",
            "Alert register (action taken, SIEM delivery, triage); Anomalies",
        ),
        m(
            "ISO/IEC 27001:2022 A.8.17",
            "Clock synchronisation of the systems that record events",
            "Every figure uses the service's clock (written_at), never an agent's claimed time; agents' times beyond the clock bound raise clock_skew alerts (Alert register)",
        ),
        m(
            "ISO/IEC 42001:2023 A.6.2.8",
            "AI system recording of event logs",
            "Population; Log completeness; Integrity; Retention",
        ),
        m(
            "EU AI Act Art. 12(1)-(2)",
            "Automatic recording of events over the lifetime; traceability of risks and operation",
            "Log completeness; Integrity; Alert register (the eu-ai-act art12 report maps each item)",
        ),
        m(
            "EU AI Act Art. 19(1), 26(6)",
            "Logs kept for at least six months",
            "Retention",
        ),
        m(
            "EU AI Act Art. 26(5)",
            "Deployers monitor the operation of the system",
            "Alert register (triage by people, enforcement); Anomalies",
        ),
    ];
    if control == Control::GdprArt30 {
        out.push(m(
            "GDPR Art. 30(1)",
            "Record of processing activities",
            "Record of processing activities; Processing observed in the audit log",
        ));
        out.push(m(
            "GDPR Art. 5(1)(e)",
            "Storage limitation",
            "Storage limitation; Exceptions: declared against observed",
        ));
    }
    out
}

/// Rows of the register listed in the PDF (all are in the JSON and the CSV).
const MAX_ALERTS_LISTED: usize = 500;

fn alert_summary(a: &crate::alerts::AlertRegister) -> String {
    let total = a.alerts.len() as u64;
    if total == 0 {
        return "no alert in the period".into();
    }
    let s = &a.siem;
    format!(
        "{}: {} resolved, {} open or acknowledged; {} with exceptions; SIEM: {} delivered, {} failed, {} pending, {} without a webhook, {} not recorded{}",
        count_of(total, "alert", "alerts"),
        n(total - a.unresolved),
        n(a.unresolved),
        n(a.exceptions),
        n(s.delivered),
        n(s.failed),
        n(s.pending),
        n(s.no_webhook),
        n(s.not_recorded),
        if s.unknown > 0 {
            format!(", {} unknown", n(s.unknown))
        } else {
            String::new()
        }
    )
}

/// The agents the report covers, as a cover line.
fn scope(p: &crate::figures::Population) -> String {
    const LISTED: usize = 12;
    let ids = &p.agent_ids;
    let mut out = format!("{}: ", count_of(ids.len() as u64, "agent", "agents"));
    out.push_str(
        &ids.iter()
            .take(LISTED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
    );
    if ids.len() > LISTED {
        out.push_str(&format!(
            " and {} more (figures.population.agent_ids in the JSON)",
            n((ids.len() - LISTED) as u64)
        ));
    }
    out
}

fn short_time(t: &str) -> String {
    // 2025-03-01T12:00:00.000Z → 2025-03-01 12:00:00Z (the JSON and CSV keep milliseconds).
    match (t.get(..10), t.get(11..19)) {
        (Some(d), Some(h)) => format!("{d} {h}Z"),
        _ => t.to_owned(),
    }
}

/// The alert register, its tests, the sample (SOC 2 CC7.2) and the exceptions.
#[allow(clippy::too_many_lines)]
fn alert_sections(sections: &mut Vec<Section>, a: &crate::alerts::AlertRegister, control: Control) {
    let mut blocks = vec![
        Block::Paragraph(format!(
            "Every alert of the period (an anomaly_detected entry written by the service, by the service's time) with the entry that raised it, the rules file in force, the action taken, its delivery to the SIEM ({}) and its triage by people (alert_acknowledged and alert_resolved entries, as of the export). Triage is due within {} hours ({}).",
            a.siem.source, a.triage_within_hours, a.triage_source
        )),
        kv(&[("Alerts", alert_summary(a))]),
    ];
    if !a.rules_versions.is_empty() {
        blocks.push(Block::Subheading("Rules in force".into()));
        blocks.push(Block::Table {
            columns: vec![
                "Loaded".into(),
                "Rules file SHA-256".into(),
                "Rules".into(),
                "Webhooks".into(),
            ],
            rows: a
                .rules_versions
                .iter()
                .map(|v| {
                    vec![
                        if v.in_period {
                            short_time(&v.loaded_at)
                        } else {
                            format!("{} (in force at the start)", short_time(&v.loaded_at))
                        },
                        v.rules_sha256.clone(),
                        format!("{} ({} enabled)", v.rules, v.enabled),
                        n(v.webhooks),
                    ]
                })
                .collect(),
            caption: Some(format!(
                "{} loaded during the period; each is a rules_loaded entry of the service's chain.",
                count_of(
                    a.rules_versions.iter().filter(|v| v.in_period).count() as u64,
                    "version",
                    "versions"
                )
            )),
        });
    } else {
        blocks.push(Block::Paragraph(
            "No rules file was recorded as loaded (rules_loaded) before or during the period: the service ran without a rules file, or its records are archived.".into(),
        ));
    }
    if !a.alerts.is_empty() {
        blocks.push(Block::Subheading("Alerts".into()));
        let shown = a.alerts.len().min(MAX_ALERTS_LISTED);
        blocks.push(Block::Table {
            columns: vec![
                "Alert id".into(),
                "Fired".into(),
                "Agent".into(),
                "Rule".into(),
                "Action".into(),
                "Trigger".into(),
            ],
            rows: a.alerts[..shown]
                .iter()
                .map(|x| {
                    vec![
                        x.alert_id.clone(),
                        short_time(&x.fired_at),
                        x.agent_id.clone(),
                        format!("{} ({})", x.rule, x.severity),
                        if x.enforcement.is_empty() || x.enforcement == "none" {
                            x.action.clone()
                        } else {
                            format!("{}: {}", x.action, x.enforcement)
                        },
                        x.trigger.as_ref().map_or_else(
                            || "none named".into(),
                            |t| match t.seq {
                                Some(seq) => format!("seq {seq}"),
                                None => "not found".into(),
                            },
                        ),
                    ]
                })
                .collect(),
            caption: (shown < a.alerts.len()).then(|| {
                format!(
                    "The first {} of {} alerts; all are in the JSON and in the .alerts.csv table.",
                    n(shown as u64),
                    n(a.alerts.len() as u64)
                )
            }),
        });
        blocks.push(Block::Subheading("Delivery and triage".into()));
        blocks.push(Block::Table {
            columns: vec![
                "Alert id".into(),
                "SIEM".into(),
                "State".into(),
                "By".into(),
                "Ticket".into(),
                "Hours".into(),
            ],
            rows: a.alerts[..shown]
                .iter()
                .map(|x| {
                    vec![
                        x.alert_id.clone(),
                        x.siem.status.replace('_', " "),
                        x.disposition
                            .as_deref()
                            .map_or_else(|| x.state.to_owned(), |d| d.replace('_', " ")),
                        x.resolved_by
                            .clone()
                            .or_else(|| x.acknowledged_by.clone())
                            .unwrap_or_default(),
                        x.ticket.clone().unwrap_or_default(),
                        x.hours_to_triage.map(|h| h.to_string()).unwrap_or_default(),
                    ]
                })
                .collect(),
            caption: Some(
                "State: the disposition of a resolved alert, else open or acknowledged. By: who resolved it, else who acknowledged it. Hours: from the alert to its first triage step.".into(),
            ),
        });
    }
    sections.push(Section {
        title: "Alert register".into(),
        blocks,
    });
    if a.alerts.is_empty() {
        return;
    }
    // The attributes, the sample and the exceptions.
    let by_id: std::collections::HashMap<&str, &crate::alerts::AlertRow> =
        a.alerts.iter().map(|x| (x.alert_id.as_str(), x)).collect();
    let mut blocks = vec![
        Block::Paragraph(format!(
            "Each alert of the period is tested on the attributes below; {} has at least one exception.",
            if a.exceptions == 1 {
                "1 alert".to_owned()
            } else {
                format!("{} alerts", n(a.exceptions))
            }
        )),
        Block::Table {
            columns: vec!["Attribute".into(), "Passes when".into()],
            rows: a
                .attributes
                .iter()
                .map(|(k, v)| vec![(*k).to_owned(), (*v).to_owned()])
                .collect(),
            caption: None,
        },
    ];
    if control == Control::Soc2Cc72 {
        blocks.push(Block::Subheading("Sample of alerts".into()));
        blocks.push(Block::Paragraph(format!(
            "The sample is drawn from the alerts (the population CC7.2 is about): {}.",
            a.sample_method
        )));
        let cell = |x: &crate::alerts::AlertRow, attr: &str| {
            x.tests
                .iter()
                .find(|t| t.attribute == attr)
                .map_or_else(String::new, |t| t.result.to_owned())
        };
        blocks.push(Block::Table {
            columns: vec![
                "Alert id".into(),
                "Trigger".into(),
                "Rules".into(),
                "Action".into(),
                "SIEM".into(),
                "Triage".into(),
            ],
            rows: a
                .sample
                .iter()
                .filter_map(|id| by_id.get(id.as_str()))
                .map(|x| {
                    vec![
                        x.alert_id.clone(),
                        cell(x, "trigger"),
                        cell(x, "rules"),
                        cell(x, "action"),
                        cell(x, "siem"),
                        cell(x, "triage"),
                    ]
                })
                .collect(),
            caption: Some(
                "What was found for each attribute is in the JSON (figures.alerts.alerts[].tests) and the .alert-tests.csv table.".into(),
            ),
        });
    }
    let exceptions: Vec<Vec<String>> = a
        .alerts
        .iter()
        .flat_map(|x| {
            x.tests
                .iter()
                .filter(|t| t.result == crate::alerts::EXCEPTION)
                .map(|t| {
                    vec![
                        x.alert_id.clone(),
                        t.attribute.to_owned(),
                        t.detail.clone(),
                        String::new(),
                    ]
                })
        })
        .collect();
    blocks.push(Block::Subheading("Exceptions".into()));
    if exceptions.is_empty() {
        blocks.push(Block::Paragraph("None.".into()));
    } else {
        let total = exceptions.len();
        blocks.push(Block::Table {
            columns: vec![
                "Alert id".into(),
                "Attribute".into(),
                "Found".into(),
                "Management response".into(),
            ],
            rows: exceptions.into_iter().take(MAX_ALERTS_LISTED).collect(),
            caption: Some(format!(
                "{}{} The management response is left for management to complete.",
                count_of(total as u64, "exception", "exceptions"),
                if total > MAX_ALERTS_LISTED {
                    format!(
                        "; the first {MAX_ALERTS_LISTED} are listed, all are in the .alert-tests.csv table."
                    )
                } else {
                    ".".into()
                }
            )),
        });
    }
    sections.push(Section {
        title: "Alert tests and exceptions".into(),
        blocks,
    });
}

/// One activity's storage-limitation test.
#[derive(Debug, Clone, Serialize)]
pub struct StorageLimit {
    /// The activity.
    pub activity: String,
    /// Its declared limit, days.
    pub limit_days: Option<u64>,
    /// The oldest personal data its agents' entries still hold ("none" without any).
    pub oldest: String,
    /// Its days kept.
    pub days_kept: Option<u64>,
    /// "within the limit", "EXCEEDS the limit", "not tested: no limit declared" or "no
    /// personal data kept".
    pub result: String,
}

/// What a GDPR Art. 30 record's declarations and the log's observations give together.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GdprFindings {
    /// Per declared activity.
    pub storage_limitation: Vec<StorageLimit>,
    /// Where the observed processing differs from the declared record, one sentence each.
    pub exceptions: Vec<String>,
}

/// Tests storage limitation per activity and reconciles the declared record with the
/// processing observed.
#[must_use]
pub fn gdpr_findings(g: &Gdpr, f: &Figures) -> GdprFindings {
    let activity_of = |agent: &str| g.activity_of(agent);
    let kept = f.personal_kept.as_deref().unwrap_or_default();
    let mut exceptions: Vec<String> = Vec::new();
    let mut storage_limitation = Vec::new();
    for a in &g.activities {
        let oldest = kept
            .iter()
            .filter(|k| a.covers(&k.agent_id))
            .max_by_key(|k| k.days_kept);
        let (what, days, result) = match oldest {
            None => ("none".to_owned(), None, "no personal data kept".to_owned()),
            Some(k) => {
                let what = format!(
                    "agent {}, seq {}, written {}",
                    k.agent_id, k.seq, k.written_at
                );
                let result = match a.erasure_limit_days {
                    None => "not tested: no limit declared".to_owned(),
                    Some(l) if k.days_kept <= l => "within the limit".to_owned(),
                    Some(l) => {
                        exceptions.push(format!(
                            "Activity \"{}\": personal data kept {} (agent {}, seq {}), beyond its declared limit of {} days.",
                            a.name,
                            count_of(k.days_kept, "day", "days"),
                            k.agent_id,
                            k.seq,
                            n(l)
                        ));
                        "EXCEEDS the limit".to_owned()
                    }
                };
                (what, Some(k.days_kept), result)
            }
        };
        storage_limitation.push(StorageLimit {
            activity: a.name.clone(),
            limit_days: a.erasure_limit_days,
            oldest: what,
            days_kept: days,
            result,
        });
    }
    for k in kept {
        if activity_of(&k.agent_id).is_none() {
            exceptions.push(format!(
                "Agent {} holds personal data ({}, the oldest kept {}) but no declared activity covers it.",
                k.agent_id,
                count_of(k.entries, "entry", "entries"),
                count_of(k.days_kept, "day", "days")
            ));
        }
    }
    let mut undeclared_agents: Vec<&str> = Vec::new();
    for t in &f.touches {
        match activity_of(&t.agent_id) {
            None => {
                if !undeclared_agents.contains(&t.agent_id.as_str()) {
                    undeclared_agents.push(&t.agent_id);
                    exceptions.push(format!(
                        "Agent {} called tools in the period but no declared activity covers it.",
                        t.agent_id
                    ));
                }
            }
            Some(a) => {
                if t.data_classification != "unclassified"
                    && !a.data_classifications.contains(&t.data_classification)
                {
                    exceptions.push(format!(
                        "Activity \"{}\": agent {}'s tool {} returned data classified {} ({}), a classification the activity does not declare.",
                        a.name,
                        t.agent_id,
                        t.tool,
                        t.data_classification,
                        count_of(t.calls, "call", "calls")
                    ));
                }
            }
        }
    }
    GdprFindings {
        storage_limitation,
        exceptions,
    }
}

/// A party as "name — contact — address" (the parts given), or `none` when none is.
fn party(p: &crate::config::Party, none: &str) -> String {
    let parts: Vec<&str> = [&p.name, &p.contact, &p.address]
        .into_iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        none.to_owned()
    } else {
        parts.join(" — ")
    }
}

/// The GDPR Art. 30 sections: the record as declared, the processing observed, storage
/// limitation per activity, and the exceptions where the two disagree.
#[allow(clippy::too_many_lines)]
fn gdpr_sections(sections: &mut Vec<Section>, g: &Gdpr, f: &Figures, findings: &GdprFindings) {
    const UNSET: &str = "(not configured)";
    let mut rows: Vec<(String, String)> =
        vec![("Controller (a)".into(), party(&g.controller, UNSET))];
    if g.joint_controllers.is_empty() {
        rows.push(("Joint controllers (a)".into(), "none declared".into()));
    }
    for jc in &g.joint_controllers {
        rows.push(("Joint controller (a)".into(), party(jc, UNSET)));
    }
    rows.push((
        "Representative, Art. 27 (a)".into(),
        party(&g.representative, "none declared"),
    ));
    rows.push(("Data protection officer (a)".into(), party(&g.dpo, UNSET)));
    rows.push(("Record version".into(), or_unset(&g.record_version)));
    rows.push(("Record last reviewed".into(), or_unset(&g.record_date)));
    let mut blocks = vec![Block::KeyValues(rows)];
    if g.activities.is_empty() {
        blocks.push(Block::Paragraph(
            "No processing activity is declared (gdpr.activities in the export settings): every agent observed below is an exception.".into(),
        ));
    }
    for a in &g.activities {
        blocks.push(Block::Subheading(a.name.clone()));
        blocks.push(kv(&[
            ("Purposes (b)", a.purposes.join("; ")),
            (
                "Categories of data subjects (c)",
                a.data_subject_categories.join("; "),
            ),
            (
                "Categories of personal data (c)",
                a.personal_data_categories.join("; "),
            ),
            ("Recipients (d)", a.recipients.join("; ")),
            (
                "Third-country transfers (e)",
                a.third_country_transfers.clone(),
            ),
            ("Safeguards (e)", a.safeguards.clone()),
            ("Time limits for erasure (f)", a.erasure_time_limits.clone()),
            (
                "Longest the audit log keeps its personal data (f)",
                a.erasure_limit_days
                    .map_or_else(|| UNSET.to_owned(), |d| format!("{} days", n(d))),
            ),
            ("Security measures (g)", a.security_measures.join("; ")),
            ("Agents", a.agents.join(", ")),
            (
                "Data classifications its tools may return",
                if a.data_classifications.is_empty() {
                    "none declared".into()
                } else {
                    a.data_classifications.join(", ")
                },
            ),
        ]));
    }
    sections.push(Section {
        title: "Record of processing activities".into(),
        blocks,
    });

    let mut obs = vec![Block::Paragraph(
        "Tool calls in the period by agent, tool and the data classification their results reported.".into(),
    )];
    obs.push(Block::Table {
        columns: vec![
            "Agent".into(),
            "Activity".into(),
            "Tool".into(),
            "Data classification".into(),
            "Calls".into(),
        ],
        rows: f
            .touches
            .iter()
            .map(|t| {
                vec![
                    t.agent_id.clone(),
                    g.activity_of(&t.agent_id)
                        .map_or("(not declared)".to_owned(), |a| a.name.clone()),
                    t.tool.clone(),
                    t.data_classification.clone(),
                    n(t.calls),
                ]
            })
            .collect(),
        caption: None,
    });
    if let Some(ds) = &f.data_subjects {
        obs.push(Block::Subheading("Data subjects".into()));
        obs.push(Block::Table {
            columns: vec![
                "Category".into(),
                "Distinct data subjects".into(),
                "Entries".into(),
                "Mentions".into(),
            ],
            rows: ds
                .iter()
                .map(|d| vec![d.category.clone(), n(d.subjects), n(d.entries), n(d.mentions)])
                .collect(),
            caption: Some("Counted from pseudonymous identifiers in the entries' erasable personal fields; no identifier is shown. Entries: entries naming at least one subject of the category; mentions: subject ids named, summed over the entries.".into()),
        });
    }
    obs.push(Block::Subheading("Erasures (Art. 17)".into()));
    obs.push(kv(&[
        ("Erasures carried out in the period", n(f.erasures.erasures)),
        (
            "Entries whose personal data they removed",
            n(f.erasures.entries_redacted),
        ),
    ]));
    sections.push(Section {
        title: "Processing observed in the audit log".into(),
        blocks: obs,
    });

    let GdprFindings {
        storage_limitation,
        exceptions,
    } = findings;
    let limit_rows: Vec<Vec<String>> = storage_limitation
        .iter()
        .map(|l| {
            vec![
                l.activity.clone(),
                l.limit_days.map_or_else(|| UNSET.to_owned(), n),
                l.oldest.clone(),
                l.days_kept.map_or_else(|| "—".to_owned(), n),
                l.result.clone(),
            ]
        })
        .collect();
    let mut lim = vec![Block::Paragraph(
        "Storage limitation (Art. 5(1)(e)) is a maximum: for each activity, the oldest entry of its agents that still holds personal data (not erased) anywhere in the log, store or archive, in days counted both ends as of the retention figure's as-of day, against the longest the activity declares (erasure_limit_days).".into(),
    )];
    lim.push(Block::Table {
        columns: vec![
            "Activity".into(),
            "Limit (days)".into(),
            "Oldest personal data kept".into(),
            "Days kept".into(),
            "Result".into(),
        ],
        rows: limit_rows,
        caption: None,
    });
    sections.push(Section {
        title: "Storage limitation".into(),
        blocks: lim,
    });
    let ex = if exceptions.is_empty() {
        vec![Block::Paragraph(
            "None: every observed agent is covered by a declared activity, every data classification observed is declared, and no personal data is kept beyond a declared limit.".into(),
        )]
    } else {
        vec![
            Block::Paragraph("Where what the log observed differs from what the record declares. The management response is for the controller to complete.".into()),
            Block::Table {
                columns: vec!["#".into(), "Exception".into(), "Management response".into()],
                rows: exceptions
                    .iter()
                    .enumerate()
                    .map(|(i, e)| vec![(i + 1).to_string(), e.clone(), String::new()])
                    .collect(),
                caption: None,
            },
        ]
    };
    sections.push(Section {
        title: "Exceptions: declared against observed".into(),
        blocks: ex,
    });
}

/// What the latest signed checkpoint covers of the chain the figures were computed on.
fn after_checkpoint_text(i: &crate::figures::Integrity) -> String {
    match (&i.checkpoint, i.after_checkpoint) {
        (Some(cp), 0) => format!(
            "The latest signed checkpoint covers the whole chain the figures were computed on ({} entries): the manifest names it.",
            n(cp.size)
        ),
        (Some(cp), after) => format!(
            "The figures were computed on {} entries; the latest signed checkpoint (tree size {}, signed {}) covers the first {}. The {} entries after it were verified by their HMACs and hash links only: a checkpoint signed later covers them, and a consistency proof from this one shows it extends it (blackbox verify --public-key checks both).",
            n(i.chain_size),
            n(cp.size),
            cp.timestamp,
            n(cp.size),
            n(after)
        ),
        (None, _) => format!(
            "No signed checkpoint covers this chain yet: its {} entries were verified by their HMACs and hash links only, which need the HMAC key (the public key alone checks nothing until a checkpoint is signed: blackbox checkpoint --sign-now).",
            n(i.chain_size)
        ),
    }
}

/// `v` with its noun: "1 day", "2 days", "1,000 days".
#[must_use]
pub fn count_of(v: u64, one: &str, many: &str) -> String {
    format!("{} {}", n(v), if v == 1 { one } else { many })
}

/// `s`, or "(not configured)" when blank.
fn or_unset(s: &str) -> String {
    if s.trim().is_empty() {
        "(not configured)".into()
    } else {
        s.to_owned()
    }
}

/// The report as JSON (deterministic: the same figures give the same bytes).
///
/// # Errors
/// Serialisation failed.
pub fn json(r: &Report<'_>) -> Result<String, ExportError> {
    serde_json::to_string_pretty(r)
        .map(|s| s + "\n")
        .map_err(|e| ExportError::Usage(format!("writing the JSON: {e}")))
}

/// The CSV tables: `(suffix, bytes)` for the daily population, the sample, the gaps and the
/// anomalies. The first is the file named by `--output`; the others get `.<suffix>.csv`.
///
/// # Errors
/// CSV writing failed.
pub fn csv_tables(f: &Figures) -> Result<Vec<(&'static str, Vec<u8>)>, ExportError> {
    fn table(
        header: &[&str],
        rows: impl Iterator<Item = Vec<String>>,
    ) -> Result<Vec<u8>, ExportError> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(header)
            .map_err(|e| ExportError::Usage(e.to_string()))?;
        for r in rows {
            w.write_record(&r)
                .map_err(|e| ExportError::Usage(e.to_string()))?;
        }
        w.into_inner()
            .map_err(|e| ExportError::Usage(e.to_string()))
    }
    Ok(vec![
        (
            "",
            table(
                &["date", "entries", "anomalies"],
                f.daily.iter().map(|d| {
                    vec![
                        d.date.clone(),
                        d.entries.to_string(),
                        d.anomalies.to_string(),
                    ]
                }),
            )?,
        ),
        (
            "sample",
            table(
                &[
                    "seq",
                    "entry_id",
                    "timestamp",
                    "agent_id",
                    "event_type",
                    "tool",
                    "decision",
                    "origin",
                ],
                f.sample.iter().map(crate::figures::SampleRow::cells),
            )?,
        ),
        (
            "gaps",
            table(
                &["kind", "agent_id", "session_id", "from", "to"],
                f.completeness.gaps.iter().map(|g| {
                    vec![
                        g.kind.into(),
                        g.agent_id.clone().unwrap_or_default(),
                        g.session_id.clone().unwrap_or_default(),
                        g.from.to_string(),
                        g.to.to_string(),
                    ]
                }),
            )?,
        ),
        (
            "alerts",
            table(
                &[
                    "alert_id",
                    "seq",
                    "fired_at",
                    "agent_id",
                    "session_id",
                    "rule",
                    "severity",
                    "action",
                    "enforcement",
                    "rules_sha256",
                    "trigger_entry_id",
                    "trigger_seq",
                    "enforcement_entry_id",
                    "siem_status",
                    "siem_deliveries",
                    "siem_delivered_at",
                    "siem_detail",
                    "state",
                    "disposition",
                    "acknowledged_by",
                    "acknowledged_at",
                    "resolved_by",
                    "resolved_at",
                    "ticket",
                    "hours_to_triage",
                    "exceptions",
                    "sampled",
                ],
                f.alerts.alerts.iter().map(|x| {
                    let o = |v: &Option<String>| v.clone().unwrap_or_default();
                    vec![
                        x.alert_id.clone(),
                        x.seq.to_string(),
                        x.fired_at.clone(),
                        x.agent_id.clone(),
                        x.session_id.clone(),
                        x.rule.clone(),
                        x.severity.clone(),
                        x.action.clone(),
                        x.enforcement.clone(),
                        x.rules_sha256.clone(),
                        x.trigger
                            .as_ref()
                            .map(|t| t.entry_id.clone())
                            .unwrap_or_default(),
                        x.trigger
                            .as_ref()
                            .and_then(|t| t.seq)
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                        o(&x.enforcement_entry),
                        x.siem.status.to_owned(),
                        x.siem.deliveries.to_string(),
                        o(&x.siem.delivered_at),
                        x.siem.detail.clone(),
                        x.state.to_owned(),
                        o(&x.disposition),
                        o(&x.acknowledged_by),
                        o(&x.acknowledged_at),
                        o(&x.resolved_by),
                        o(&x.resolved_at),
                        o(&x.ticket),
                        x.hours_to_triage.map(|h| h.to_string()).unwrap_or_default(),
                        x.tests
                            .iter()
                            .filter(|t| t.result == crate::alerts::EXCEPTION)
                            .count()
                            .to_string(),
                        f.alerts.sample.contains(&x.alert_id).to_string(),
                    ]
                }),
            )?,
        ),
        (
            "alert-tests",
            table(
                &[
                    "alert_id",
                    "attribute",
                    "result",
                    "detail",
                    "management_response",
                ],
                f.alerts.alerts.iter().flat_map(|x| {
                    x.tests.iter().map(|t| {
                        vec![
                            x.alert_id.clone(),
                            t.attribute.to_owned(),
                            t.result.to_owned(),
                            t.detail.clone(),
                            String::new(),
                        ]
                    })
                }),
            )?,
        ),
        (
            "rules",
            table(
                &[
                    "loaded_at",
                    "chain",
                    "seq",
                    "rules_sha256",
                    "rules",
                    "enabled",
                    "webhooks",
                    "file",
                    "in_period",
                ],
                f.alerts.rules_versions.iter().map(|v| {
                    vec![
                        v.loaded_at.clone(),
                        v.chain.clone(),
                        v.seq.to_string(),
                        v.rules_sha256.clone(),
                        v.rules.to_string(),
                        v.enabled.to_string(),
                        v.webhooks.to_string(),
                        v.file.clone(),
                        v.in_period.to_string(),
                    ]
                }),
            )?,
        ),
        (
            "anomalies",
            table(
                &["rule", "action", "severity", "flagged", "resolved"],
                f.anomalies.by_rule.iter().map(|x| {
                    vec![
                        x.rule.clone(),
                        x.action.clone(),
                        x.severity.clone(),
                        x.count.to_string(),
                        x.resolved.to_string(),
                    ]
                }),
            )?,
        ),
    ])
}
