//! Limits that keep one client from starving the others (docs/API.md, "Limits and fairness"):
//!
//! - [`FairShare`]: a budget (bytes of request bodies in flight, slots for expensive reads)
//!   shared by every tenant, of which one tenant may hold at most a fixed part. A tenant past
//!   its part is refused (429) while the others are still answered; only when every tenant
//!   together exhausts the budget are requests refused with 503.
//! - [`TimedBody`]: a request body that pauses too long between two reads, or takes too long in
//!   all, ends with [`BodyTimeout`] (answered 408, and the connection is closed).
//! - [`AddressLimiter`]: token buckets per client address for requests without a valid token,
//!   in bounded memory.
//! - [`query_utf8_error`]: a query string whose percent-decoded bytes are not UTF-8.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Who a share of a budget is counted for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShareKey {
    /// A tenant (every token bound to it together).
    Tenant(String),
    /// A token without a tenant (an admin token acting for every tenant): each counts alone.
    Token(String),
}

impl ShareKey {
    /// The key of a token: its tenant, or the token itself when it has none.
    #[must_use]
    pub fn of(token: &crate::tokens::TokenInfo) -> Self {
        match &token.tenant_id {
            Some(t) => Self::Tenant(t.clone()),
            None => Self::Token(token.id.clone()),
        }
    }
}

/// Why a share was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This key already holds `held` of the `cap` it may hold.
    KeyFull {
        /// Units the key holds.
        held: usize,
        /// Units one key may hold.
        cap: usize,
    },
    /// The whole budget is in use (by several keys).
    Exhausted,
}

/// A budget of `total` units shared by keys, each of which may hold at most `per_key`.
///
/// What a key holds is counted from the moment it asks (also while it waits for the shared
/// budget), so that one key's queue of waiters cannot fill the budget either. Memory: one map
/// entry per key holding something, removed when it holds nothing.
#[derive(Debug)]
pub struct FairShare {
    total: usize,
    per_key: usize,
    global: Arc<Semaphore>,
    held: Mutex<HashMap<ShareKey, usize>>,
}

/// Units of a [`FairShare`] held until dropped.
#[derive(Debug)]
pub struct Share {
    owner: Arc<FairShare>,
    key: ShareKey,
    units: usize,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.owner.release(&self.key, self.units);
    }
}

impl FairShare {
    /// A budget of `total` units (at most `u32::MAX`), `per_key` of which one key may hold
    /// (clamped to 1..=total).
    #[must_use]
    pub fn new(total: usize, per_key: usize) -> Arc<Self> {
        let total = total.clamp(1, u32::MAX as usize);
        Arc::new(Self {
            total,
            per_key: per_key.clamp(1, total),
            global: Arc::new(Semaphore::new(total)),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// Units in the budget.
    #[must_use]
    pub fn total(&self) -> usize {
        self.total
    }

    /// Units one key may hold.
    #[must_use]
    pub fn per_key(&self) -> usize {
        self.per_key
    }

    /// Units `key` holds (or waits for) now.
    #[must_use]
    pub fn held_by(&self, key: &ShareKey) -> usize {
        self.lock().get(key).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ShareKey, usize>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts `units` for `key` if its part allows it; the returned share has no permit yet.
    fn reserve(self: &Arc<Self>, key: &ShareKey, units: usize) -> Result<Share, Refused> {
        let units = units.clamp(1, self.per_key);
        let mut held = self.lock();
        let now = held.get(key).copied().unwrap_or(0);
        if now + units > self.per_key {
            return Err(Refused::KeyFull {
                held: now,
                cap: self.per_key,
            });
        }
        held.insert(key.clone(), now + units);
        Ok(Share {
            owner: Arc::clone(self),
            key: key.clone(),
            units,
            _permit: None,
        })
    }

    fn release(&self, key: &ShareKey, units: usize) {
        let mut held = self.lock();
        if let Some(n) = held.get_mut(key) {
            *n = n.saturating_sub(units);
            if *n == 0 {
                held.remove(key);
            }
        }
    }

    /// `units` (clamped to 1..=per_key) for `key` at once, or why not.
    ///
    /// # Errors
    /// [`Refused::KeyFull`] when the key would hold more than its part, [`Refused::Exhausted`]
    /// when the shared budget has not that many units free.
    pub fn try_take(self: &Arc<Self>, key: &ShareKey, units: usize) -> Result<Share, Refused> {
        let mut share = self.reserve(key, units)?;
        let n = u32::try_from(share.units).unwrap_or(u32::MAX);
        // On failure `share` is dropped, which gives the key's reservation back.
        let permit = Arc::clone(&self.global)
            .try_acquire_many_owned(n)
            .map_err(|_| Refused::Exhausted)?;
        share._permit = Some(permit);
        Ok(share)
    }

    /// Like [`Self::try_take`], but waits up to `wait` for the shared budget (never for the
    /// key's own part: a key at its part is refused at once).
    ///
    /// # Errors
    /// As [`Self::try_take`]; [`Refused::Exhausted`] after `wait`.
    pub async fn take_within(
        self: &Arc<Self>,
        key: &ShareKey,
        units: usize,
        wait: Duration,
    ) -> Result<Share, Refused> {
        let mut share = self.reserve(key, units)?;
        let n = u32::try_from(share.units).unwrap_or(u32::MAX);
        let permit = tokio::time::timeout(wait, Arc::clone(&self.global).acquire_many_owned(n))
            .await
            .map_err(|_| Refused::Exhausted)?
            .map_err(|_| Refused::Exhausted)?;
        share._permit = Some(permit);
        Ok(share)
    }
}

// ---- request bodies ------------------------------------------------------------------------------

/// A request body paused longer than the idle timeout between two reads, or was not complete
/// by its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimeout {
    /// No bytes for this long.
    #[error("the request body sent nothing for {} s", .0.as_secs_f64())]
    Idle(Duration),
    /// Not complete after this long.
    #[error("the request body was not complete after {} s", .0.as_secs_f64())]
    Deadline(Duration),
}

/// Finds a [`BodyTimeout`] in an error's chain of sources.
#[must_use]
pub fn find_timeout(e: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<BodyTimeout>() {
            return Some(*t);
        }
        cur = err.source();
    }
    None
}

/// A request body with an idle timeout between frames and a total deadline. `timed_out` is set
/// when either fires, so that the answer can close the connection.
pub struct TimedBody {
    inner: Body,
    idle: Duration,
    deadline: Duration,
    idle_sleep: Pin<Box<tokio::time::Sleep>>,
    deadline_sleep: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
    done: bool,
}

impl std::fmt::Debug for TimedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedBody")
            .field("idle", &self.idle)
            .field("deadline", &self.deadline)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl TimedBody {
    /// Wraps `inner`; both clocks start now.
    #[must_use]
    pub fn new(
        inner: Body,
        idle: Duration,
        deadline: Duration,
        timed_out: Arc<AtomicBool>,
    ) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            inner,
            idle,
            deadline,
            idle_sleep: Box::pin(tokio::time::sleep_until(now + idle)),
            deadline_sleep: Box::pin(tokio::time::sleep_until(now + deadline)),
            timed_out,
            done: false,
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.idle_sleep.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                let fired = if this.deadline_sleep.as_mut().poll(cx).is_ready() {
                    Some(BodyTimeout::Deadline(this.deadline))
                } else if this.idle_sleep.as_mut().poll(cx).is_ready() {
                    Some(BodyTimeout::Idle(this.idle))
                } else {
                    None
                };
                match fired {
                    Some(t) => {
                        this.done = true;
                        this.timed_out.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(axum::Error::new(t))))
                    }
                    None => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---- requests without a valid token ----------------------------------------------------------

/// Most client addresses tracked; past it, addresses whose bucket is full again are forgotten,
/// and if that is not enough, all are.
const MAX_ADDRESSES: usize = 10_000;

/// Token buckets per client address for requests without a valid token (IPv6 addresses count
/// per /64, the block one client usually holds).
#[derive(Debug)]
pub struct AddressLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl AddressLimiter {
    /// `per_second` refusals per second and address, in bursts of `burst` (0: no limit).
    #[must_use]
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
        }
    }

    /// Takes one token for `ip`: `Ok`, or the seconds to wait.
    ///
    /// # Errors
    /// The seconds until the address has a token again.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut b = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.len() >= MAX_ADDRESSES {
            let (rate, burst) = (self.rate, self.burst);
            b.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
            });
            if b.len() >= MAX_ADDRESSES {
                b.clear();
            }
        }
        let (tokens, last) = b.entry(Self::key(ip)).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            // a small positive number of seconds
            let wait = ((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64;
            Err(wait)
        }
    }

    /// Addresses tracked now.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

// ---- query strings ---------------------------------------------------------------------------

/// Why a query string is refused: a parameter whose percent-decoded bytes are not UTF-8 (the
/// query parser would otherwise replace them with U+FFFD and look for something else than the
/// client asked for). `None` when every parameter is valid.
#[must_use]
pub fn query_utf8_error(query: &str) -> Option<String> {
    for (i, part) in query.split('&').enumerate() {
        let decoded = percent_decode(part.as_bytes());
        if let Err(e) = std::str::from_utf8(&decoded) {
            let name = part.split('=').next().unwrap_or("");
            let name = if std::str::from_utf8(&percent_decode(name.as_bytes())).is_ok() {
                format!(
                    "parameter `{}`",
                    String::from_utf8_lossy(&percent_decode(name.as_bytes()))
                )
            } else {
                format!("parameter {}", i + 1)
            };
            return Some(format!(
                "the query string is not valid UTF-8: {name} holds a byte sequence that is not UTF-8 once percent-decoded (byte {} of `name=value`); percent-encode the UTF-8 bytes of the text",
                e.valid_up_to()
            ));
        }
    }
    None
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits: at most 0xff.
            out.push(u8::try_from(h * 16 + l).unwrap_or(u8::MAX));
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> ShareKey {
        ShareKey::Tenant(s.to_owned())
    }

    #[test]
    fn one_key_cannot_take_more_than_its_part_and_others_are_served() {
        let f = FairShare::new(4, 2);
        let a1 = f.try_take(&tenant("a"), 1).unwrap();
        let _a2 = f.try_take(&tenant("a"), 1).unwrap();
        assert_eq!(
            f.try_take(&tenant("a"), 1).unwrap_err(),
            Refused::KeyFull { held: 2, cap: 2 }
        );
        let _b1 = f.try_take(&tenant("b"), 1).unwrap();
        let _b2 = f.try_take(&tenant("b"), 1).unwrap();
        // Two keys at their part fill the budget: a third is refused as "exhausted".
        assert_eq!(f.try_take(&tenant("c"), 1).unwrap_err(), Refused::Exhausted);
        drop(a1);
        assert_eq!(f.held_by(&tenant("a")), 1);
        let _c = f.try_take(&tenant("c"), 1).unwrap();
        // An admin token counts under its own key, not under any tenant.
        assert_eq!(f.held_by(&ShareKey::Token("x".into())), 0);
    }

    #[test]
    fn tokens_of_a_tenant_share_its_key_and_admin_tokens_count_alone() {
        let token = |id: &str, tenant: Option<&str>, scopes: &str| crate::tokens::TokenInfo {
            id: id.into(),
            tenant_id: tenant.map(str::to_owned),
            scopes: crate::tokens::Scopes::parse(scopes).unwrap(),
            label: String::new(),
            created_ms: 0,
            revoked_ms: None,
        };
        let a1 = ShareKey::of(&token("1", Some("acme"), "ingest"));
        let a2 = ShareKey::of(&token("2", Some("acme"), "read"));
        assert_eq!(a1, a2);
        let admin = ShareKey::of(&token("3", None, "admin"));
        assert_eq!(admin, ShareKey::Token("3".into()));
        // A tenant named like a token id is still another key.
        assert_ne!(ShareKey::of(&token("4", Some("3"), "read")), admin);
        let f = FairShare::new(4, 1);
        let _a = f.try_take(&a1, 1).unwrap();
        assert!(matches!(f.try_take(&a2, 1), Err(Refused::KeyFull { .. })));
        let _admin = f.try_take(&admin, 1).unwrap();
    }

    #[test]
    fn refused_and_dropped_shares_give_their_units_back() {
        let f = FairShare::new(100, 60);
        let a = f.try_take(&tenant("a"), 60).unwrap();
        let b = f.try_take(&tenant("b"), 40).unwrap();
        // b holds 40; 10 more would fit its part, but the budget is spent.
        assert_eq!(
            f.try_take(&tenant("b"), 10).unwrap_err(),
            Refused::Exhausted
        );
        assert_eq!(f.held_by(&tenant("b")), 40);
        drop(a);
        drop(b);
        assert_eq!(f.held_by(&tenant("a")), 0);
        assert!(f.lock().is_empty(), "keys holding nothing are forgotten");
        // More than a key's part is asked as the part (a body may not be larger anyway).
        let big = f.try_take(&tenant("a"), 1000).unwrap();
        assert_eq!(big.units, 60);
    }

    #[tokio::test]
    async fn waiting_counts_against_the_key_and_times_out() {
        let f = FairShare::new(2, 1);
        let _a = f.try_take(&tenant("a"), 1).unwrap();
        let _b = f.try_take(&tenant("b"), 1).unwrap();
        let started = Instant::now();
        let e = f
            .take_within(&tenant("c"), 1, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e, Refused::Exhausted);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(f.held_by(&tenant("c")), 0);
        // A key at its part is refused at once, without waiting.
        let e = f
            .take_within(&tenant("a"), 1, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(e, Refused::KeyFull { held: 1, cap: 1 });
    }

    #[test]
    fn address_buckets_refill_and_ipv6_counts_per_64() {
        let l = AddressLimiter::new(1, 3);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            l.check(ip).unwrap();
        }
        assert_eq!(l.check(ip), Err(1));
        l.check("192.0.2.8".parse().unwrap()).unwrap();
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for _ in 0..3 {
            l.check(v6a).unwrap();
        }
        assert!(l.check(v6b).is_err(), "the same /64 shares one bucket");
        assert_eq!(l.tracked(), 3);
        assert!(AddressLimiter::new(0, 0).check(ip).is_ok());
    }

    #[test]
    fn address_memory_is_bounded() {
        let l = AddressLimiter::new(1, 2);
        for i in 0..(MAX_ADDRESSES as u32 + 500) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check(ip);
        }
        assert!(l.tracked() <= MAX_ADDRESSES, "{}", l.tracked());
    }

    #[test]
    fn query_strings_must_be_utf8_once_decoded() {
        assert_eq!(
            query_utf8_error("tenant_id=acme&agent_id=%C3%A9t%C3%A9"),
            None
        );
        assert_eq!(query_utf8_error("a=100%&b=%zz"), None);
        let e = query_utf8_error("limit=5&agent_id=%FF").unwrap();
        assert!(e.contains("`agent_id`"), "{e}");
        assert!(e.contains("not valid UTF-8"), "{e}");
        let e = query_utf8_error("%C3=1").unwrap();
        assert!(e.contains("parameter 1"), "{e}");
    }

    #[tokio::test]
    async fn a_stalled_body_ends_with_a_timeout_and_sets_the_flag() {
        use http_body_util::BodyExt as _;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let inner = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let flag = Arc::new(AtomicBool::new(false));
        let mut b = TimedBody::new(
            inner,
            Duration::from_millis(100),
            Duration::from_secs(60),
            Arc::clone(&flag),
        );
        tx.send(Ok(Bytes::from_static(b"{"))).await.unwrap();
        assert!(b.frame().await.unwrap().is_ok());
        let e = b.frame().await.unwrap().unwrap_err();
        assert_eq!(
            find_timeout(&e),
            Some(BodyTimeout::Idle(Duration::from_millis(100)))
        );
        assert!(flag.load(Ordering::Relaxed));
        assert!(b.frame().await.is_none());
        drop(tx);
    }
}
