//! A PSP that answers exactly what CONTRACT.md promises and nothing more — a session as
//! `{token, url, status}` — works with `serve --psp-url`: the payment registers, the buyer is
//! sent to the PSP's page, and once the PSP says the session succeeded (here found by the
//! poller) the payment is captured for its own amount and the books balance.
//!
//! The same PSP over HTTPS (a certificate of its own CA, as `--psp-ca-file` gives it): trusted
//! through that CA, and refused without it — not one session is registered with a PSP whose
//! certificate does not check out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

/// The PSP's state: whether the buyer has paid yet.
#[derive(Clone, Default)]
struct Minimal {
    paid: Arc<AtomicBool>,
    registered: Arc<AtomicUsize>,
    base_url: Arc<std::sync::OnceLock<String>>,
}

impl Minimal {
    fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/v1/payment_sessions", post(register))
            .route("/v1/payment_sessions/{token}", get(status))
            .with_state(self.clone())
    }
}

async fn register(State(psp): State<Minimal>) -> (StatusCode, Json<Value>) {
    psp.registered.fetch_add(1, Ordering::SeqCst);
    let url = format!("{}/pay/tok_min_1", psp.base_url.get().unwrap());
    (
        StatusCode::CREATED,
        Json(json!({"token": "tok_min_1", "url": url, "status": "open"})),
    )
}

async fn status(State(psp): State<Minimal>, Path(token): Path<String>) -> Json<Value> {
    let url = format!("{}/pay/{token}", psp.base_url.get().unwrap());
    let status = if psp.paid.load(Ordering::SeqCst) {
        "succeeded"
    } else {
        "open"
    };
    Json(json!({"token": token, "url": url, "status": status}))
}

/// A payment through `psp`: registered there (the buyer sent to its page), paid, and found
/// succeeded by the poller.
async fn pays_through(app: &TestApp, psp: &Minimal, base_url: &str, checkout_id: &str) {
    let created = app
        .post_payment(&format!("key-{checkout_id}"), &checkout(checkout_id))
        .await;
    assert_eq!(created.status(), 201);
    let payment: Value = created.json().await.unwrap();
    assert_eq!(payment["redirect_url"], format!("{base_url}/pay/tok_min_1"));
    assert_eq!(payment["status"], "requires_payment", "{payment:#}");
    psp.paid.store(true, Ordering::SeqCst);
    let id = payment["id"].as_str().unwrap();
    eventually(
        Duration::from_secs(20),
        "the poller captures it",
        || async { app.get_payment(id).await["status"] == "succeeded" },
    )
    .await;
}

async fn a_psp_that_says_only_what_the_contract_says_works(db: Db) {
    let psp = Minimal::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    psp.base_url.set(base_url.clone()).unwrap();
    let router = psp.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let Some(app) = spawn_app_with(
        db,
        AppOptions {
            psp_url: Some(base_url.clone()),
            poll_after_ms: 200,
            ..AppOptions::default()
        },
    )
    .await
    else {
        server.abort();
        return;
    };
    pays_through(&app, &psp, &base_url, "chk_minimal").await;
    assert_eq!(app.account_sum("seller:seller_a", "USD").await, -1500);
    assert_eq!(app.account_sum("seller:seller_b", "USD").await, -250);
    assert!(app.verify_ledger().await.ok());
    server.abort();
}

/// A TLS listener for `axum::serve`: TCP accepted, then the handshake; a failed handshake (a
/// client that does not trust us) is dropped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The minimal PSP on `https://127.0.0.1:PORT` with a fresh self-signed certificate; answers
/// the PSP, its URL, the certificate's PEM and the server task.
async fn https_psp() -> (Minimal, String, String, tokio::task::JoinHandle<()>) {
    use tokio_rustls::rustls::{self, pki_types};
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("https://{}", tcp.local_addr().unwrap());
    let psp = Minimal::default();
    psp.base_url.set(base_url.clone()).unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let router = psp.router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (psp, base_url, certified.cert.pem(), server)
}

async fn a_psp_over_https_is_trusted_through_its_ca_and_only_so(db: Db) {
    let (psp, base_url, ca_pem, server) = https_psp().await;
    let Some(app) = spawn_app_with(
        db,
        AppOptions {
            psp_url: Some(base_url.clone()),
            psp_ca_pem: Some(ca_pem.into_bytes()),
            poll_after_ms: 200,
            ..AppOptions::default()
        },
    )
    .await
    else {
        server.abort();
        return;
    };
    pays_through(&app, &psp, &base_url, "chk_https").await;
    assert_eq!(psp.registered.load(Ordering::SeqCst), 1);
    server.abort();

    // The same PSP, but ferropay does not know its CA: the certificate is refused, and no
    // session is registered; the checkout is told to come back later.
    let (psp, base_url, _, server) = https_psp().await;
    let Some(untrusting) = spawn_app_with(
        db,
        AppOptions {
            psp_url: Some(base_url),
            ..AppOptions::default()
        },
    )
    .await
    else {
        server.abort();
        return;
    };
    let refused = untrusting
        .post_payment("key-https", &checkout("chk_https"))
        .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(psp.registered.load(Ordering::SeqCst), 0);
    server.abort();
}

db_test!(
    a_psp_that_says_only_what_the_contract_says_works,
    a_psp_over_https_is_trusted_through_its_ca_and_only_so,
);
