//! Payment sessions: their state machine (`open` → `processing` → `succeeded` | `failed`, or
//! `open` → `expired`), what a card attempt or a 3-D Secure answer does to one, the review timer,
//! and the expiry sweeper. Each transition creates its webhook event under the lock.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cards::CardOutcome;
use crate::clock::unix_now_s;
use crate::store::{Store, new_id};
use crate::webhooks::{self, Event};
use crate::{App, AppState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionStatus {
    Open,
    Processing,
    Succeeded,
    Failed,
    Expired,
}

impl SessionStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

/// A payment session: one payment the merchant registered, and what the buyer did with it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) token: String,
    pub(crate) url: String,
    pub(crate) psp_reference: String,
    pub(crate) amount: i64,
    pub(crate) currency: String,
    /// The merchant's payment id.
    pub(crate) reference: String,
    pub(crate) return_url: String,
    pub(crate) status: SessionStatus,
    pub(crate) failure_code: Option<&'static str>,
    pub(crate) created_unix_s: i64,
    pub(crate) expires_at_unix_s: i64,
    /// A 3-D Secure challenge is waiting for its code (the session is still open).
    pub(crate) challenge_pending: bool,
    /// Last four digits of the card of the last attempt.
    pub(crate) card_last4: Option<String>,
    /// Sum of the succeeded refunds, minor units.
    pub(crate) amount_refunded: i64,
    /// When the payment succeeded (unix s): the day whose settlement file carries it.
    pub(crate) succeeded_unix_s: Option<i64>,
}

impl Session {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "token": self.token,
            "url": self.url,
            "status": self.status.as_str(),
            "amount": self.amount,
            "currency": self.currency,
            "reference": self.reference,
            "return_url": self.return_url,
            "psp_reference": self.psp_reference,
            "created": self.created_unix_s,
            "expires_at": self.expires_at_unix_s,
            "failure_code": self.failure_code,
            "card_last4": self.card_last4,
            "amount_refunded": self.amount_refunded,
        })
    }

    fn event(&self, kind: &'static str) -> Event {
        Event::new(
            kind,
            json!({
                "token": self.token,
                "reference": self.reference,
                "psp_reference": self.psp_reference,
                "amount": self.amount,
                "currency": self.currency,
                "status": self.status.as_str(),
                "failure_code": self.failure_code,
            }),
        )
    }

    /// Takes `transition` and returns the event that says so.
    fn move_to(&mut self, transition: Transition) -> Event {
        let (status, failure_code, kind) = match transition {
            Transition::Processing => (SessionStatus::Processing, None, "payment.processing"),
            Transition::Succeeded => (SessionStatus::Succeeded, None, "payment.succeeded"),
            Transition::Failed(code) => (SessionStatus::Failed, Some(code), "payment.failed"),
            Transition::Expired => (SessionStatus::Expired, None, "payment.expired"),
        };
        self.status = status;
        self.failure_code = failure_code;
        self.challenge_pending = false;
        if status == SessionStatus::Succeeded {
            self.succeeded_unix_s = Some(unix_now_s());
        }
        self.event(kind)
    }
}

/// The moves out of `open` (and, for `Succeeded`, out of `processing`).
#[derive(Debug, Clone, Copy)]
enum Transition {
    Processing,
    Succeeded,
    Failed(&'static str),
    Expired,
}

/// What the merchant asked for in `POST /v1/payment_sessions`.
#[derive(Debug)]
pub(crate) struct NewSession {
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) reference: String,
    pub(crate) return_url: String,
}

/// Registers an open session; it expires `session_ttl_ms` from now.
pub(crate) fn open(store: &mut Store, app: &App, new: NewSession) -> Session {
    let token = new_id("tok_");
    let psp_reference = new_id("psp_");
    let ttl_ms = app.config.session_ttl_ms;
    let created_unix_s = unix_now_s();
    let ttl_s = i64::try_from(ttl_ms.div_ceil(1_000)).unwrap_or(i64::MAX);
    let session = Session {
        url: format!("{}/pay/{token}", app.public_url),
        token: token.clone(),
        psp_reference: psp_reference.clone(),
        amount: new.amount,
        currency: new.currency,
        reference: new.reference,
        return_url: new.return_url,
        status: SessionStatus::Open,
        failure_code: None,
        created_unix_s,
        expires_at_unix_s: created_unix_s.saturating_add(ttl_s),
        challenge_pending: false,
        card_last4: None,
        amount_refunded: 0,
        succeeded_unix_s: None,
    };
    let deadline = Instant::now()
        .checked_add(Duration::from_millis(ttl_ms))
        .unwrap_or_else(far_future);
    store.expiry_queue.push_back((deadline, token.clone()));
    store
        .tokens_by_psp_reference
        .insert(psp_reference, token.clone());
    store
        .tokens_by_reference
        .entry(session.reference.clone())
        .or_default()
        .push(token.clone());
    store.sessions.insert(token, session.clone());
    session
}

/// A deadline that never comes (about thirty years ahead).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(30 * 365 * 86_400)
}

/// What a card attempt or a challenge answer came to.
#[derive(Debug)]
pub(crate) enum Attempted {
    /// No such session.
    Missing,
    /// The session is not open (or, for a challenge, has none pending); nothing changed.
    NotOpen(Session),
    /// Decided (`succeeded`, `failed` or `processing`): redirect the buyer.
    Decided(Session),
    /// A 3-D Secure challenge must be answered first.
    ChallengeAsked(Session),
    /// The attempt failed with `processing_error`; the session stays open.
    ProcessingError(Session),
}

/// Applies a test card's outcome to an open session.
pub(crate) fn attempt_card(
    app: &AppState,
    token: &str,
    outcome: CardOutcome,
    card_last4: String,
) -> Attempted {
    let (attempted, event) = {
        let mut store = app.store();
        let Some(session) = store.sessions.get_mut(token) else {
            return Attempted::Missing;
        };
        if session.status != SessionStatus::Open {
            return Attempted::NotOpen(session.clone());
        }
        session.card_last4 = Some(card_last4);
        match outcome {
            CardOutcome::Succeed | CardOutcome::SucceedThenDispute => {
                let event = session.move_to(Transition::Succeeded);
                (Attempted::Decided(session.clone()), Some(event))
            }
            CardOutcome::Decline(code) => {
                let event = session.move_to(Transition::Failed(code));
                (Attempted::Decided(session.clone()), Some(event))
            }
            CardOutcome::Review => {
                let event = session.move_to(Transition::Processing);
                (Attempted::Decided(session.clone()), Some(event))
            }
            CardOutcome::Challenge => {
                session.challenge_pending = true;
                (Attempted::ChallengeAsked(session.clone()), None)
            }
            CardOutcome::ProcessingError => {
                session.challenge_pending = false;
                (Attempted::ProcessingError(session.clone()), None)
            }
        }
    };
    if let Some(event) = event {
        webhooks::emit(app, vec![event]);
    }
    if outcome == CardOutcome::Review {
        app.background
            .submit(finish_review(app.clone(), token.to_owned()));
    }
    if outcome == CardOutcome::SucceedThenDispute && matches!(attempted, Attempted::Decided(_)) {
        app.background
            .submit(crate::disputes::open_later(app.clone(), token.to_owned()));
    }
    attempted
}

/// Applies the answer to a pending 3-D Secure challenge.
pub(crate) fn answer_challenge(app: &AppState, token: &str, passed: bool) -> Attempted {
    let (attempted, event) = {
        let mut store = app.store();
        let Some(session) = store.sessions.get_mut(token) else {
            return Attempted::Missing;
        };
        if session.status != SessionStatus::Open || !session.challenge_pending {
            return Attempted::NotOpen(session.clone());
        }
        let event = if passed {
            session.move_to(Transition::Succeeded)
        } else {
            session.move_to(Transition::Failed("authentication_failed"))
        };
        (Attempted::Decided(session.clone()), event)
    };
    webhooks::emit(app, vec![event]);
    attempted
}

/// After the review delay, a session still `processing` succeeds.
async fn finish_review(app: AppState, token: String) {
    tokio::time::sleep(Duration::from_millis(app.config.review_delay_ms)).await;
    let event = {
        let mut store = app.store();
        match store.sessions.get_mut(&token) {
            Some(session) if session.status == SessionStatus::Processing => {
                Some(session.move_to(Transition::Succeeded))
            }
            _ => None,
        }
    };
    if let Some(event) = event {
        webhooks::emit(&app, vec![event]);
    }
}

/// How often the sweeper looks for expired sessions: a quarter of the TTL, 10..=250 ms.
fn sweep_period(session_ttl_ms: u64) -> Duration {
    Duration::from_millis((session_ttl_ms / 4).clamp(10, 250))
}

/// Runs for the sandbox's life: open sessions past their deadline become `expired`.
pub(crate) async fn sweep_expired(app: AppState) {
    let mut ticker = tokio::time::interval(sweep_period(app.config.session_ttl_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let events = expire_due(&app, Instant::now());
        if !events.is_empty() {
            webhooks::emit(&app, events);
        }
    }
}

fn expire_due(app: &AppState, now: Instant) -> Vec<Event> {
    let mut events = Vec::new();
    let mut store = app.store();
    while let Some((deadline, _)) = store.expiry_queue.front() {
        if *deadline > now {
            break;
        }
        let Some((_, token)) = store.expiry_queue.pop_front() else {
            break;
        };
        if let Some(session) = store.sessions.get_mut(&token)
            && session.status == SessionStatus::Open
        {
            events.push(session.move_to(Transition::Expired));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::sweep_period;
    use std::time::Duration;

    #[test]
    fn sweep_period_is_bounded() {
        assert_eq!(sweep_period(0), Duration::from_millis(10));
        assert_eq!(sweep_period(200), Duration::from_millis(50));
        assert_eq!(sweep_period(3_600_000), Duration::from_millis(250));
    }
}
