//! The operator console (`/console`) and the analysts' views, black-box over both databases:
//! no page without a session; the sign-in form's cookie; forms refused without their CSRF token
//! (nothing changes) and from a read-only session; a paid payment found, its timeline, a refund
//! made through the API shown on its page; the wallet, the trial balance and `ledger verify` on
//! demand; a break resolved and a dead letter replayed through the console; a disputed payment
//! and its dispute's page (history, journal, won); bad filters are 400s naming the field. The
//! page queries and the views are also checked on a seeded database of a few thousand payments
//! (every row paged through once, filters against plain SQL, `settlement_days` and
//! `account_balances` against the postings' own sums).

use std::time::Duration;

use ferropay::console::{self, Cursor, bench_data};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::db_test;
use crate::disputes::{CARD_DISPUTED, app_with_disputes};
use crate::helpers::*;

/// A browser's view of the console: its session cookie and the CSRF token of its forms.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_named(cookies: &[String], name: &str) -> Option<String> {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .cloned()
}

/// The value of the first `<input … name="NAME" value="…">` of a page.
fn field_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Signs in with `key`: the sign-in form's answer (303 on success) and the session cookie.
async fn sign_in(app: &TestApp, key: &str) -> (reqwest::Response, Option<String>) {
    let form = app
        .http
        .get(format!("{}/console/login", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let login_cookie = cookie_named(&set_cookies(&form), "ferropay_console_login").unwrap();
    let html = form.text().await.unwrap();
    let nonce = field_value(&html, "csrf").unwrap();
    let pair = login_cookie.split(';').next().unwrap().to_owned();
    let answer = app
        .http
        .post(format!("{}/console/login", app.base_url))
        .header("Cookie", pair)
        .form(&[("csrf", nonce.as_str()), ("key", key)])
        .send()
        .await
        .unwrap();
    let session = cookie_named(&set_cookies(&answer), "ferropay_console")
        .filter(|c| !c.starts_with("ferropay_console=;"));
    (answer, session)
}

impl Browser {
    async fn signed_in(app: &TestApp, key: &str) -> Self {
        let (answer, session) = sign_in(app, key).await;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        assert_eq!(answer.headers()["location"], "/console");
        Self {
            http: app.http.clone(),
            base: app.base_url.clone(),
            cookie: session.unwrap().split(';').next().unwrap().to_owned(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// The page at `path` (200), as text.
    async fn page(&self, path: &str) -> String {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    /// Posts a form found on `page_path` (its CSRF token included unless `with_csrf` is false).
    async fn post(
        &self,
        page_path: &str,
        action: &str,
        fields: &[(&str, &str)],
        with_csrf: bool,
    ) -> reqwest::Response {
        let page = self.page(page_path).await;
        let csrf = field_value(&page, "csrf").expect("the page has a form with a CSRF token");
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        if with_csrf {
            form.push(("csrf", &csrf));
        }
        self.http
            .post(format!("{}{action}", self.base))
            .header("Cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

async fn operator_key(app: &TestApp, scope: ferropay::api_keys::Scope) -> String {
    ferropay::api_keys::create_scoped(&app.service().store, "console", &[scope])
        .await
        .unwrap()
        .secret
}

async fn no_page_without_a_session_and_no_form_without_its_csrf_token(db: Db) {
    use ferropay::api_keys::Scope;
    let Some(app) = spawn_app(db).await else {
        return;
    };
    // Without a session every page sends to the sign-in form, and every action changes nothing.
    for path in [
        "/console",
        "/console/payments",
        "/console/payments/pay_x",
        "/console/sellers",
        "/console/ledger",
        "/console/reconciliation",
        "/console/dead-letters",
        "/console/deliveries",
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.base_url))
            .header("Cookie", "ferropay_console=cs_forged")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()["location"], "/console/login", "{path}");
    }
    let response = app
        .http
        .post(format!("{}/console/ledger/verify", app.base_url))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    // The sign-in form: its own double-submit cookie; a wrong key, a key of the wrong scope and
    // a form without its token are refused and set no session.
    let (answer, session) = sign_in(&app, "sk_wrong").await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(session.is_none());
    let payments_key = operator_key(&app, Scope::Payments).await;
    let (answer, session) = sign_in(&app, &payments_key).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(session.is_none());
    let forged = app
        .http
        .post(format!("{}/console/login", app.base_url))
        .form(&[("key", app.api_key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(cookie_named(&set_cookies(&forged), "ferropay_console").is_none());

    // An operator key: a session cookie that scripts cannot read, sent to /console only, never
    // to another site's request, and expiring (no Secure over plain http).
    let key = operator_key(&app, Scope::Operator).await;
    let (answer, session) = sign_in(&app, &key).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let session = session.unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(session.contains(attribute), "{attribute}: {session}");
    }
    assert!(!session.contains("Secure"), "{session}");
    assert!(!session.contains(&key));
    let browser = Browser::signed_in(&app, &key).await;
    let overview = browser.page("/console").await;
    assert!(overview.contains("Overview"));
    let (status, _) = browser.get("/console").await;
    assert_eq!(status, StatusCode::OK);
    // A bad byte in a page's id is 400 naming it, on every page with one, never a 500.
    for (path, field) in [
        ("/console/payments/%00", "\"id\""),
        ("/console/sellers/%FF", "\"id\""),
        ("/console/ledger/transactions/a%00b", "\"id\""),
        ("/console/dead-letters/%01", "\"id\""),
    ] {
        let (status, body) = browser.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body.contains(field), "{path}: {body}");
    }

    // A form without the session's CSRF token (or with another session's) is refused: 403.
    let (status, _) = browser.get("/console/ledger").await;
    assert_eq!(status, StatusCode::OK);
    let refused = browser
        .post("/console/ledger", "/console/ledger/verify", &[], false)
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("csrf_failed"));
    let other = Browser::signed_in(&app, &key).await;
    let other_page = other.page("/console/ledger").await;
    let other_token = field_value(&other_page, "csrf").unwrap();
    let crossed = app
        .http
        .post(format!("{}/console/ledger/verify", app.base_url))
        .header("Cookie", &browser.cookie)
        .form(&[("csrf", other_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), StatusCode::FORBIDDEN);
    let verified = browser
        .post("/console/ledger", "/console/ledger/verify", &[], true)
        .await;
    assert_eq!(verified.status(), StatusCode::OK);

    // A read-only key may look, not act.
    let reader = Browser::signed_in(&app, &operator_key(&app, Scope::ReadOnly).await).await;
    reader.page("/console/payments").await;
    let refused = reader
        .post("/console/ledger", "/console/ledger/verify", &[], true)
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("insufficient_scope"));

    // Signing out ends the session; so does revoking its key.
    let signed_out = browser.post("/console", "/console/logout", &[], true).await;
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    let (status, _) = browser.get("/console").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    other.page("/console").await;
    let key_id: String =
        sqlx::query("SELECT id FROM api_keys WHERE name = 'console' AND scopes = 'operator'")
            .fetch_one(app.service().store.pool())
            .await
            .unwrap()
            .get("id");
    ferropay::api_keys::revoke(&app.service().store, &key_id)
        .await
        .unwrap();
    let (status, _) = other.get("/console").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

async fn a_paid_payment_its_timeline_its_refund_and_the_books(db: Db) {
    use ferropay::api_keys::Scope;
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.paid_payment("chk_console").await;
    let id = payment["id"].as_str().unwrap();
    let other = app.create_payment("chk_console_open").await;
    let browser = Browser::signed_in(&app, &operator_key(&app, Scope::Operator).await).await;

    // Found by status, seller, buyer and checkout; an id goes straight to its page.
    let succeeded = browser.page("/console/payments?status=succeeded").await;
    assert!(succeeded.contains(id));
    assert!(!succeeded.contains(other["id"].as_str().unwrap()));
    for query in [
        "seller_id=seller_b",
        "buyer_id=buyer_7",
        "checkout_id=chk_console",
    ] {
        let found = browser.page(&format!("/console/payments?{query}")).await;
        assert!(found.contains(id), "{query}");
    }
    let nobody = browser.page("/console/payments?seller_id=seller_z").await;
    assert!(nobody.contains("No payment matches."));
    let (status, _) = browser.get(&format!("/console/payments?id={id}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Its page: amount, orders, and a timeline from creation to the capture.
    let page = browser.page(&format!("/console/payments/{id}")).await;
    assert!(page.contains("17.50 USD"), "{page}");
    assert!(page.contains(r#"data-status="succeeded""#));
    for moment in ["created", "job", "webhook", "event", "journal"] {
        assert!(
            page.contains(&format!(r#"data-moment="{moment}""#)),
            "{moment} in the timeline"
        );
    }
    assert!(page.contains("webhook received: payment.succeeded"));
    assert!(page.contains(&format!("capture:{id}")));
    assert!(page.contains("No refund."));

    // A refund made through the API shows on the page, settled.
    let refund = app
        .post_keyed(
            &format!("/v1/payments/{id}/refunds"),
            "console-refund",
            &json!({"order_id": "ord_1", "amount": 500}),
        )
        .await;
    assert_eq!(refund.status(), StatusCode::CREATED);
    let refund: Value = refund.json().await.unwrap();
    let refund_id = refund["id"].as_str().unwrap();
    app.wait_for_item(
        &format!("/v1/payments/{id}/refunds"),
        refund_id,
        "succeeded",
    )
    .await;
    let page = browser.page(&format!("/console/payments/{id}")).await;
    assert!(page.contains(&format!(r#"data-refund="{refund_id}""#)));
    assert!(page.contains(r#"data-status="partially_refunded""#));
    assert!(page.contains(&format!("refund {refund_id}")));
    assert!(page.contains("journal: refund"));

    // The seller's page shows what the API shows.
    let (balance, available) = app.wallet("seller_a", "USD").await;
    assert_eq!((balance, available), (1000, 1000));
    let seller = browser.page("/console/sellers/seller_a").await;
    assert!(seller.contains("10.00 USD"), "{seller}");
    assert!(seller.contains("seller:seller_a"));
    let sellers = browser.page("/console/sellers?q=seller_").await;
    assert!(
        sellers.contains(r#"data-seller="seller_a""#)
            && sellers.contains(r#"data-seller="seller_b""#)
    );

    // The ledger: the trial balance, a transaction with its hash, and verify on demand.
    let settlement = browser.page("/console/ledger/settlement?days=3").await;
    assert!(settlement.contains("<td>sandbox</td>"), "{settlement}");
    let (status, _) = browser.get("/console/ledger/settlement?days=99").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let ledger = browser.page("/console/ledger").await;
    assert!(ledger.contains(r#"data-account="seller:seller_a""#));
    assert!(ledger.contains(r#"data-account="psp_receivable:sandbox""#));
    let transaction_id: String = sqlx::query(
        "SELECT id FROM journal_transactions WHERE payment_id = $1 AND kind = 'capture'",
    )
    .bind(id)
    .fetch_one(app.service().store.pool())
    .await
    .unwrap()
    .get("id");
    let transaction = browser
        .page(&format!("/console/ledger/transactions/{transaction_id}"))
        .await;
    assert!(transaction.contains(r#"data-total="0""#));
    let verified = browser
        .post("/console/ledger", "/console/ledger/verify", &[], true)
        .await
        .text()
        .await
        .unwrap();
    assert!(verified.contains(r#"data-ok="true""#), "{verified}");
    assert!(verified.contains(r#"data-currency="USD""#));
    assert!(verified.contains(r#"data-total="0""#));
    assert_eq!(
        balances_differing_from_postings(&app.service().store).await,
        0
    );

    // The overview counts today's payments and draws the hour's capture.
    let overview = browser.page("/console").await;
    assert!(overview.contains(r#"data-status="partially_refunded""#));
    assert!(overview.contains("<svg"));

    // Bad filters: 400 naming the field, as the API does.
    for (query, field) in [
        ("status=nope", "status"),
        ("from=yesterday", "from"),
        ("after=garbage", "after"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = browser.get(&format!("/console/payments?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body.contains(&format!(r#"data-field="{field}""#)),
            "{query}: {body}"
        );
    }
    let (status, _) = browser.get("/console/payments/pay_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = browser.get("/console/reconciliation?kind=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(app.verify_ledger().await.ok());
}

async fn an_operator_resolves_a_break_and_replays_a_dead_letter(db: Db) {
    use ferropay::api_keys::Scope;
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let browser = Browser::signed_in(&app, &operator_key(&app, Scope::Operator).await).await;

    // A settlement line for a payment the books do not know: a break.
    let file = std::env::temp_dir().join(format!(
        "ferropay-console-{}.csv",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::write(
        &file,
        "psp_reference,merchant_reference,type,created_at,currency,gross,fee,net,batch\n\
         psp_ghost,pay_ghost,payment,2026-11-28T10:00:00Z,USD,1000,59,941,stl_1\n",
    )
    .unwrap();
    let report = app
        .service()
        .reconciler()
        .reconcile_file(&file, &Default::default(), &|_| {})
        .await
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(report.breaks_found >= 1);
    let listed = browser.page("/console/reconciliation?status=open").await;
    let break_id: String =
        sqlx::query("SELECT id FROM reconciliation_breaks WHERE merchant_reference = 'pay_ghost'")
            .fetch_one(app.service().store.pool())
            .await
            .unwrap()
            .get("id");
    assert!(listed.contains(&format!(r#"data-break="{break_id}""#)));
    let break_page = format!("/console/reconciliation/breaks/{break_id}");
    let action = format!("{break_page}/resolve");

    // Without its CSRF token, or without a reason, nothing changes.
    let refused = browser
        .post(&break_page, &action, &[("reason", "forged")], false)
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let empty = browser
        .post(&break_page, &action, &[("reason", " ")], true)
        .await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    assert!(
        empty
            .text()
            .await
            .unwrap()
            .contains(r#"data-field="reason""#)
    );
    let open: Value = app.get_json("/v1/reconciliation/breaks?status=open").await;
    assert!(open.to_string().contains(&break_id));

    let resolved = browser
        .post(
            &break_page,
            &action,
            &[("reason", "test payment at the PSP, not ours")],
            true,
        )
        .await;
    assert_eq!(resolved.status(), StatusCode::SEE_OTHER);
    let shown = browser.page(&break_page).await;
    assert!(shown.contains(r#"data-status="resolved""#));
    assert!(shown.contains("test payment at the PSP, not ours"));
    let again = browser
        .post(
            "/console/reconciliation",
            &action,
            &[("reason", "twice")],
            true,
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    // A payment paid at the PSP whose webhook was lost, and whose poll died while the PSP was
    // down: replayed from the console, the poll finds it paid and the payment succeeds.
    let payment = app.create_payment("chk_console_dead").await;
    let payment_id = payment["id"].as_str().unwrap();
    let lost = app
        .http
        .post(format!("{}/v1/test/lost_webhooks", app.sandbox_url))
        .bearer_auth(PSP_API_KEY)
        .json(&json!({"references": [payment_id]}))
        .send()
        .await
        .unwrap();
    assert!(lost.status().is_success());
    app.pay(&payment, CARD_OK).await;
    sqlx::query(
        "UPDATE jobs SET status = 'dead', finished_at_ms = updated_at_ms, attempts = 10, \
         last_error = 'retryable: sandbox unreachable' \
         WHERE kind = 'payin.poll_session' AND idempotency_key = $1",
    )
    .bind(payment_id)
    .execute(app.service().store.pool())
    .await
    .unwrap();
    assert_eq!(
        app.get_payment(payment_id).await["status"],
        "requires_payment"
    );
    let job_id: String = sqlx::query(
        "SELECT id FROM jobs WHERE kind = 'payin.poll_session' AND idempotency_key = $1",
    )
    .bind(payment_id)
    .fetch_one(app.service().store.pool())
    .await
    .unwrap()
    .get("id");
    let dead = browser.page("/console/dead-letters").await;
    assert!(dead.contains(&format!(r#"data-job="{job_id}""#)));
    let job_page = format!("/console/dead-letters/{job_id}");
    let replay = format!("{job_page}/replay");
    let refused = browser.post(&job_page, &replay, &[], false).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs WHERE status = 'dead'")
            .await,
        1
    );
    let replayed = browser.post(&job_page, &replay, &[], true).await;
    assert_eq!(replayed.status(), StatusCode::SEE_OTHER);
    let store = app.service().store.clone();
    let job = job_id.clone();
    eventually(Duration::from_secs(15), "the replayed poll runs", || {
        let (store, job) = (store.clone(), job.clone());
        async move {
            console::dead_letters::job(&store, &job)
                .await
                .unwrap()
                .status
                == "done"
        }
    })
    .await;
    app.wait_for_status(payment_id, "succeeded").await;
    let dead = browser.page("/console/dead-letters").await;
    assert!(!dead.contains(&format!(r#"data-job="{job_id}""#)));
    assert!(
        browser
            .page(&job_page)
            .await
            .contains(r#"data-status="done""#)
    );
}

async fn page_queries_and_views_on_a_seeded_database(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let store = app.service().store.clone();
    const COUNT: i64 = 3_000;
    let now = ferropay::clock::now_ms();
    bench_data::seed(&store, COUNT, now, &|_| {}).await.unwrap();

    // Every payment once, newest first, by pages of 50.
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = console::payments::list(&store, &Default::default(), after.as_ref())
            .await
            .unwrap();
        assert!(page.rows.len() <= console::PAGE_ROWS as usize);
        seen.extend(page.rows.iter().map(|r| (r.created_at_ms, r.id.clone())));
        match page.next {
            Some(next) => after = Some(Cursor::parse(&next).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len() as i64, COUNT);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeat"
    );

    // Filters give what plain SQL gives.
    let filter = console::payments::PaymentFilter {
        seller_id: Some(bench_data::seller_id(42)),
        ..Default::default()
    };
    let page = console::payments::list(&store, &filter, None)
        .await
        .unwrap();
    let expected = count_on_with(
        &store,
        "SELECT COUNT(*) AS n FROM payment_orders WHERE seller_id = $1",
        &bench_data::seller_id(42),
    )
    .await;
    assert_eq!(page.rows.len() as i64, expected);
    let filter = console::payments::PaymentFilter {
        status: Some(ferropay::payin::model::PaymentStatus::Failed),
        ..Default::default()
    };
    let mut failed = 0;
    let mut after = None;
    loop {
        let page = console::payments::list(&store, &filter, after.as_ref())
            .await
            .unwrap();
        assert!(page.rows.iter().all(|r| r.status == "failed"));
        failed += page.rows.len() as i64;
        match page.next {
            Some(next) => after = Some(Cursor::parse(&next).unwrap()),
            None => break,
        }
    }
    assert_eq!(
        failed,
        count_on(
            &store,
            "SELECT COUNT(*) FROM payments WHERE status = 'failed'"
        )
        .await
    );

    // The views: the trial balance sums to zero per currency and the wallets are what the
    // seller accounts hold; the funnel counts every payment; daily settlement pairs the days.
    let total: i64 =
        sqlx::query("SELECT CAST(SUM(balance_minor) AS BIGINT) AS t FROM trial_balance")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get("t");
    assert_eq!(total, 0);
    // The balances the engine keeps are the postings' own sums, account by account.
    assert_eq!(balances_differing_from_postings(&store).await, 0);
    let mismatched = count_on(
        &store,
        "SELECT COUNT(*) FROM seller_balances s JOIN trial_balance t \
         ON t.account = 'seller:' || s.seller_id AND t.currency = s.currency \
         WHERE s.balance_minor <> -t.balance_minor OR s.amount_minor <> s.balance_minor",
    )
    .await;
    assert_eq!(mismatched, 0);
    // Sellers with a capture have a wallet: 70 of each 100 payments were captured.
    assert_eq!(
        count_on(&store, "SELECT COUNT(*) FROM seller_balances").await,
        count_on(
            &store,
            "SELECT COUNT(*) FROM trial_balance WHERE account LIKE 'seller:%'"
        )
        .await
    );
    assert_eq!(
        count_on(&store, "SELECT COUNT(*) FROM seller_balances").await,
        bench_data::SELLERS.min(COUNT) * 70 / 100
    );
    let funnel = sqlx::query(
        "SELECT CAST(SUM(created) AS BIGINT) AS created, CAST(SUM(paid) AS BIGINT) AS paid, \
         CAST(SUM(failed) AS BIGINT) AS failed FROM payment_funnel",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(funnel.get::<i64, _>("created"), COUNT);
    assert_eq!(funnel.get::<i64, _>("paid"), COUNT * 70 / 100);
    assert_eq!(funnel.get::<i64, _>("failed"), failed);
    let days = console::overview::funnel(&store, 0).await.unwrap();
    assert!(
        days.iter()
            .all(|d| d.conversion_bps == d.paid * 10_000 / d.created)
    );
    let settlement = console::ledger::daily_settlement(&store, 0).await.unwrap();
    let expected: i64 = settlement.iter().map(|d| d.expected_minor).sum();
    let paid_out: i64 = settlement.iter().map(|d| d.paid_out_minor).sum();
    assert!(expected > 0);
    assert_eq!(expected, paid_out, "the seed pays out every capture");
    let outstanding: i64 = settlement.iter().map(|d| d.outstanding_minor).sum();
    assert_eq!(outstanding, 0);

    // The trial balance pages by account; breaks and dead letters page too.
    let first = console::ledger::trial_balance(&store, None, None)
        .await
        .unwrap();
    let next = first.next.clone().unwrap();
    let second = console::ledger::trial_balance(&store, None, Some(&next))
        .await
        .unwrap();
    assert!(first.rows.last().unwrap().account < second.rows[0].account);
    let open = console::reconciliation::breaks(
        &store,
        &console::reconciliation::BreakFilter {
            status: Some("open".into()),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert!(open.rows.iter().all(|b| b.status == "open"));
    assert_eq!(open.rows.len(), console::PAGE_ROWS as usize);
    let dead = console::dead_letters::list(&store, None, None)
        .await
        .unwrap();
    assert_eq!(dead.rows.len(), console::PAGE_ROWS as usize);
    assert!(dead.next.is_some());

    // Disputes: each filter gives what plain SQL gives, every page newest first.
    use console::disputes::{DisputeFilter, list};
    use ferropay::psp::DisputeStatus;
    let all_disputes = |filter: DisputeFilter| {
        let store = store.clone();
        async move {
            let mut seen = Vec::new();
            let mut after: Option<Cursor> = None;
            loop {
                let page = list(&store, &filter, after.as_ref()).await.unwrap();
                seen.extend(page.rows);
                match page.next {
                    Some(next) => after = Some(Cursor::parse(&next).unwrap()),
                    None => return seen,
                }
            }
        }
    };
    let disputes = all_disputes(DisputeFilter::default()).await;
    assert_eq!(
        disputes.len() as i64,
        count_on(&store, "SELECT COUNT(*) FROM disputes").await
    );
    assert_eq!(disputes.len() as i64, COUNT / 100);
    assert!(
        disputes
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at)
    );
    let waiting = all_disputes(DisputeFilter {
        status: Some(DisputeStatus::NeedsResponse),
        ..Default::default()
    })
    .await;
    assert!(waiting.iter().all(|d| d.status == "needs_response"));
    assert_eq!(
        waiting.len() as i64,
        count_on(
            &store,
            "SELECT COUNT(*) FROM disputes WHERE status = 'needs_response'"
        )
        .await
    );
    let seller = bench_data::seller_id(0);
    let of_seller = all_disputes(DisputeFilter {
        seller_id: Some(seller.clone()),
        ..Default::default()
    })
    .await;
    assert!(!of_seller.is_empty());
    assert_eq!(
        of_seller.len() as i64,
        count_on_with(
            &store,
            "SELECT COUNT(*) AS n FROM disputes d JOIN payment_orders o \
             ON o.payment_id = d.payment_id WHERE o.seller_id = $1",
            &seller,
        )
        .await
    );
    let payment = bench_data::payment_id(100);
    let of_payment = all_disputes(DisputeFilter {
        payment_id: Some(payment.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(of_payment.len(), 1);
    assert_eq!(of_payment[0].payment_id, payment);
    let detail = console::disputes::detail(&store, &of_payment[0].id)
        .await
        .unwrap();
    assert_eq!(detail.payment.id, payment);
    assert_eq!(detail.history.len(), 1);
    assert_eq!(detail.history[0].status, "needs_response");
    // The funnel counts each disputed payment once, on the day the payment was created.
    let disputed: i64 =
        sqlx::query("SELECT CAST(SUM(disputed) AS BIGINT) AS n FROM payment_funnel")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get("n");
    assert_eq!(
        disputed,
        count_on(&store, "SELECT COUNT(DISTINCT payment_id) FROM disputes").await
    );
    assert_eq!(disputed_days_differing_from_disputes(&store).await, 0);
    // settlement_days, which daily_settlement reads, holds the postings' own sums day by day.
    assert_eq!(settlement_days_differing_from_postings(&store).await, 0);
    assert_eq!(
        count_on(&store, "SELECT COUNT(*) FROM daily_settlement").await,
        count_on(&store, "SELECT COUNT(*) FROM settlement_days").await
    );
}

async fn a_disputed_payment_and_its_dispute_in_the_console(db: Db) {
    use ferropay::api_keys::Scope;
    let Some(app) = app_with_disputes(db).await else {
        return;
    };
    let payment = app
        .paid("chk_console_disputed", CARD_DISPUTED, "succeeded")
        .await;
    let payment_id = payment["id"].as_str().unwrap();
    let other = app.paid_payment("chk_console_undisputed").await;
    let dispute = app.wait_for_disputes(payment_id, 1).await.remove(0);
    let dispute_id = dispute["id"].as_str().unwrap();
    let browser = Browser::signed_in(&app, &operator_key(&app, Scope::Operator).await).await;

    // The payment's page lists its dispute and its timeline links to it.
    let page = browser
        .page(&format!("/console/payments/{payment_id}"))
        .await;
    assert!(
        page.contains(&format!(r#"data-dispute="{dispute_id}""#)),
        "{page}"
    );
    assert!(page.contains(r#"data-moment="dispute""#));
    assert!(page.contains(&format!(r#"href="/console/disputes/{dispute_id}""#)));
    assert!(page.contains("journal: chargeback"));
    let undisputed = browser
        .page(&format!(
            "/console/payments/{}",
            other["id"].as_str().unwrap()
        ))
        .await;
    assert!(!undisputed.contains("data-dispute="));

    // The list, and each filter: status, payment, seller.
    for (query, listed) in [
        ("", true),
        ("?status=needs_response", true),
        ("?status=won", false),
        (&format!("?payment_id={payment_id}") as &str, true),
        ("?payment_id=pay_nope", false),
        ("?seller_id=seller_a", true),
        ("?seller_id=seller_z", false),
    ] {
        let list = browser.page(&format!("/console/disputes{query}")).await;
        assert_eq!(
            list.contains(&format!(r#"data-dispute="{dispute_id}""#)),
            listed,
            "{query}: {list}"
        );
    }
    for (query, field) in [
        ("status=open", "status"),
        ("after=garbage", "after"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = browser.get(&format!("/console/disputes?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body.contains(&format!(r#"data-field="{field}""#)),
            "{query}: {body}"
        );
    }
    let (status, _) = browser.get("/console/disputes/dp_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = browser.get("/console/disputes/a%00b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The dispute's page: amount, reason, payment, history, the withdrawal in the journal.
    let dispute_page = format!("/console/disputes/{dispute_id}");
    let shown = browser.page(&dispute_page).await;
    assert!(
        shown.contains(r#"id="dispute" data-status="needs_response""#),
        "{shown}"
    );
    assert!(shown.contains("17.50 USD"));
    assert!(shown.contains("fraudulent"));
    assert!(shown.contains(&format!(r#"href="/console/payments/{payment_id}""#)));
    assert!(shown.contains(r#"<li data-status="needs_response""#));
    assert!(shown.contains(&format!(
        "chargeback:{}",
        dispute["psp_dispute_id"].as_str().unwrap()
    )));
    assert!(!shown.contains("chargeback_reversal"));

    // Won: the history shows it, and the reinstatement is in the journal.
    app.decide_dispute(dispute["psp_dispute_id"].as_str().unwrap(), "won")
        .await;
    app.wait_for_dispute(payment_id, dispute_id, "won").await;
    let shown = browser.page(&dispute_page).await;
    assert!(
        shown.contains(r#"id="dispute" data-status="won""#),
        "{shown}"
    );
    assert!(shown.contains(r#"<li data-status="won""#));
    assert!(shown.contains("chargeback_reversal"));

    // A second dispute of the same payment: listed, but the payment counts once as disputed.
    let session = app.psp_sessions_for(payment_id).await.remove(0);
    app.sandbox_hook(
        "/v1/test/chargebacks",
        json!({"psp_reference": session["psp_reference"], "amount": 500, "notify": true}),
    )
    .await;
    app.wait_for_disputes(payment_id, 2).await;
    let listed = browser
        .page(&format!("/console/disputes?payment_id={payment_id}"))
        .await;
    assert_eq!(listed.matches("<tr data-dispute=").count(), 2, "{listed}");

    // The funnel counts today's disputed payment once; the overview shows it.
    let today = console::overview::funnel(
        &app.service().store,
        console::day_start_ms(ferropay::clock::now_ms()),
    )
    .await
    .unwrap();
    assert_eq!(today[0].disputed, 1);
    assert_eq!(today[0].paid, 2);
    // The overview: the funnel's disputed payment, and the second dispute awaiting a response.
    let overview = browser.page("/console").await;
    assert!(
        overview.contains(r#"<a href="/console/disputes">1</a>"#),
        "{overview}"
    );
    assert!(overview.contains(r#"href="/console/disputes?status=needs_response">1</a>"#));

    // The kept settlement days are the postings' sums; `ledger verify` says so, and catches a
    // kept day that was altered.
    assert_eq!(
        settlement_days_differing_from_postings(&app.service().store).await,
        0
    );
    assert!(app.verify_ledger().await.ok());
    sqlx::query("UPDATE settlement_days SET expected_minor = expected_minor + 1")
        .execute(app.service().store.pool())
        .await
        .unwrap();
    let report = app.verify_ledger().await;
    assert!(!report.settlement_days_match && !report.ok(), "{report:?}");
    assert_eq!(report.settlement_day_mismatches.len(), 1, "{report:?}");
    assert!(report.settlement_day_mismatches[0].starts_with("sandbox:USD:"));
}

/// Days of `disputed_days` that differ from the count of that day's payments with a dispute,
/// or are missing from it.
async fn disputed_days_differing_from_disputes(store: &ferropay::store::Store) -> i64 {
    count_on(
        store,
        "SELECT COUNT(*) FROM (SELECT created_at_ms - created_at_ms % 86400000 AS d, \
           COUNT(*) AS n FROM payments WHERE id IN (SELECT payment_id FROM disputes) \
           GROUP BY 1) p \
         FULL OUTER JOIN disputed_days k ON k.day_start_ms = p.d \
         WHERE k.day_start_ms IS NULL OR p.d IS NULL OR k.disputed <> p.n",
    )
    .await
}

/// Days of `settlement_days` (per PSP and currency) that differ from the sums of their
/// postings on `psp_receivable:{psp}`, or are missing from it, or have no postings.
async fn settlement_days_differing_from_postings(store: &ferropay::store::Store) -> i64 {
    count_on(
        store,
        "SELECT COUNT(*) FROM (SELECT j.created_at_ms - j.created_at_ms % 86400000 AS d,            SUBSTR(p.account, 16) AS psp, p.currency,            CAST(SUM(CASE WHEN j.kind <> 'bank_settlement' THEN p.amount_minor ELSE 0 END) AS BIGINT) AS e,            CAST(SUM(CASE WHEN j.kind = 'bank_settlement' THEN -p.amount_minor ELSE 0 END) AS BIGINT) AS o,            COUNT(*) AS n          FROM postings p JOIN journal_transactions j ON j.id = p.transaction_id          WHERE p.account LIKE 'psp_receivable:%' GROUP BY 1, 2, 3) p          FULL OUTER JOIN settlement_days s ON s.day_start_ms = p.d AND s.psp = p.psp            AND s.currency = p.currency          WHERE s.psp IS NULL OR p.psp IS NULL OR s.expected_minor <> p.e            OR s.paid_out_minor <> p.o OR s.postings <> p.n",
    )
    .await
}

/// Accounts whose `trial_balance` row differs from the sum and count of their postings.
async fn balances_differing_from_postings(store: &ferropay::store::Store) -> i64 {
    count_on(
        store,
        "SELECT COUNT(*) FROM (SELECT account, currency, CAST(SUM(amount_minor) AS BIGINT) AS s, \
         COUNT(*) AS n FROM postings GROUP BY account, currency) p \
         FULL OUTER JOIN trial_balance t ON t.account = p.account AND t.currency = p.currency \
         WHERE t.balance_minor IS NULL OR p.s IS NULL OR t.balance_minor <> p.s OR t.postings <> p.n",
    )
    .await
}

async fn count_on_with(store: &ferropay::store::Store, sql: &'static str, param: &str) -> i64 {
    sqlx::query(sql)
        .bind(param)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("n")
}

db_test!(
    no_page_without_a_session_and_no_form_without_its_csrf_token,
    a_paid_payment_its_timeline_its_refund_and_the_books,
    an_operator_resolves_a_break_and_replays_a_dead_letter,
    page_queries_and_views_on_a_seeded_database,
    a_disputed_payment_and_its_dispute_in_the_console,
);
