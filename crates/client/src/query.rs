//! Query strings of `GET /v1/entries` and friends.

use std::fmt::Write as _;

/// Output format of `GET /v1/entries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One entry per line (the default).
    #[default]
    Jsonl,
    /// One JSON document with the entries and `next_cursor`.
    Json,
    /// CSV with a header line.
    Csv,
}

impl Format {
    /// The value of the `format` parameter.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Json => "json",
            Self::Csv => "csv",
        }
    }
}

/// Filters and paging of `GET /v1/entries` (docs/API.md, "Reading"). Unset members are left out
/// of the query string. Build it with the chained setters:
///
/// ```
/// # use blackbox_client::EntryQuery;
/// let q = EntryQuery::new().agent_id("agent-7").event_type("tool_call").limit(100);
/// assert_eq!(q.to_query_string(None), "agent_id=agent-7&event_type=tool_call&limit=100");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryQuery {
    /// Only this agent.
    pub agent_id: Option<String>,
    /// Only this session.
    pub session_id: Option<String>,
    /// Only calls of this tool.
    pub tool: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// From this time (RFC 3339 or a date), inclusive.
    pub start: Option<String>,
    /// Until this time (RFC 3339 or a date).
    pub end: Option<String>,
    /// Page size; with it the service answers a cursor for the next page.
    pub limit: Option<u64>,
    /// Continue after the page that answered this cursor.
    pub cursor: Option<String>,
    /// Tail the chain in seq order after this seq.
    pub after_seq: Option<u64>,
    /// The tenant, for admin tokens.
    pub tenant_id: Option<String>,
}

macro_rules! setter {
    ($name:ident, String, $doc:literal) => {
        #[doc = $doc]
        #[must_use]
        pub fn $name(mut self, v: impl Into<String>) -> Self {
            self.$name = Some(v.into());
            self
        }
    };
    ($name:ident, u64, $doc:literal) => {
        #[doc = $doc]
        #[must_use]
        pub fn $name(mut self, v: u64) -> Self {
            self.$name = Some(v);
            self
        }
    };
}

impl EntryQuery {
    /// No filter: every entry the token may read.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    setter!(agent_id, String, "Only this agent.");
    setter!(session_id, String, "Only this session.");
    setter!(tool, String, "Only calls of this tool.");
    setter!(event_type, String, "Only this event type.");
    setter!(start, String, "From this time (RFC 3339 or a date).");
    setter!(end, String, "Until this time (RFC 3339 or a date).");
    setter!(limit, u64, "Page size.");
    setter!(
        cursor,
        String,
        "Continue after the page that answered this cursor."
    );
    setter!(
        after_seq,
        u64,
        "Tail the chain in seq order after this seq."
    );
    setter!(tenant_id, String, "The tenant (admin tokens).");

    /// The query string (without `?`), members in a fixed order, values percent-encoded.
    #[must_use]
    pub fn to_query_string(&self, format: Option<Format>) -> String {
        let mut q = QueryString::default();
        q.opt("agent_id", self.agent_id.as_deref());
        q.opt("session_id", self.session_id.as_deref());
        q.opt("tool", self.tool.as_deref());
        q.opt("event_type", self.event_type.as_deref());
        q.opt("start", self.start.as_deref());
        q.opt("end", self.end.as_deref());
        q.opt_u64("after_seq", self.after_seq);
        q.opt_u64("limit", self.limit);
        q.opt("format", format.map(Format::as_str));
        q.opt("cursor", self.cursor.as_deref());
        q.opt("tenant_id", self.tenant_id.as_deref());
        q.finish()
    }
}

/// Filters of `GET /v1/alerts` (all optional; alerts come oldest first, a page at a time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    /// Tenant (admin tokens; others see their own).
    pub tenant_id: Option<String>,
    /// `open`, `acknowledged` or `resolved`.
    pub state: Option<String>,
    /// Rule name.
    pub rule: Option<String>,
    /// Agent.
    pub agent_id: Option<String>,
    /// Fired at or after (RFC 3339 or a date).
    pub since: Option<String>,
    /// Fired at or before (RFC 3339 or a date).
    pub until: Option<String>,
    /// Alerts per page (1 to 1000; the service's default is 100).
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl AlertQuery {
    pub(crate) fn to_query(&self) -> String {
        let mut q = QueryString::default();
        q.opt("tenant_id", self.tenant_id.as_deref());
        q.opt("state", self.state.as_deref());
        q.opt("rule", self.rule.as_deref());
        q.opt("agent_id", self.agent_id.as_deref());
        q.opt("since", self.since.as_deref());
        q.opt("until", self.until.as_deref());
        q.opt_u64("limit", self.limit);
        q.opt("cursor", self.cursor.as_deref());
        q.finish()
    }
}

/// A query string under construction.
#[derive(Debug, Default)]
pub(crate) struct QueryString(String);

impl QueryString {
    pub(crate) fn opt(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            if !self.0.is_empty() {
                self.0.push('&');
            }
            self.0.push_str(key);
            self.0.push('=');
            encode_into(&mut self.0, v);
        }
    }

    pub(crate) fn opt_u64(&mut self, key: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.opt(key, Some(&v.to_string()));
        }
    }

    pub(crate) fn finish(self) -> String {
        self.0
    }
}

/// `path` followed by `?query` when the query is not empty.
pub(crate) fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so the result is safe both in
/// a query value and in a path segment.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    encode_into(&mut out, s);
    out
}

fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_query_is_empty() {
        assert_eq!(EntryQuery::new().to_query_string(None), "");
        assert_eq!(with_query("/v1/entries", ""), "/v1/entries");
    }

    #[test]
    fn every_member_in_a_fixed_order() {
        let q = EntryQuery::new()
            .tenant_id("acme")
            .cursor("c1")
            .limit(50)
            .after_seq(7)
            .end("2026-04-15")
            .start("2026-04-14T00:00:00+02:00")
            .event_type("tool_call")
            .tool("query_database")
            .session_id("sess 1")
            .agent_id("agent/1");
        assert_eq!(
            q.to_query_string(Some(Format::Csv)),
            "agent_id=agent%2F1&session_id=sess%201&tool=query_database&event_type=tool_call\
             &start=2026-04-14T00%3A00%3A00%2B02%3A00&end=2026-04-15&after_seq=7&limit=50\
             &format=csv&cursor=c1&tenant_id=acme"
        );
    }

    #[test]
    fn encodes_reserved_and_non_ascii() {
        assert_eq!(encode("a&b=c?d#e"), "a%26b%3Dc%3Fd%23e");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(encode("+ %"), "%2B%20%25");
    }

    #[test]
    fn formats() {
        assert_eq!(Format::default().as_str(), "jsonl");
        assert_eq!(Format::Json.as_str(), "json");
        let q = EntryQuery::new().limit(1);
        assert_eq!(q.to_query_string(Some(Format::Json)), "limit=1&format=json");
    }
}
