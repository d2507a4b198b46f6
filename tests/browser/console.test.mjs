// The operator console in a real browser: Debian's Chromium, headless, driven by playwright-core.
// It starts the built `ferropay serve` (SQLite in a temporary directory) against `ferropay
// sandbox-psp` run as a separate process on a known port, so that the PSP can be stopped and
// started again: a payment created while the PSP is down leaves a dead letter (the server runs
// with --job-max-attempts 1 and no retry window), and replaying it once the PSP is back registers the payment.
// An operator signs in, finds a paid payment and reads its timeline, sees a refund made through
// the API, verifies the ledger, resolves a reconciliation break (a settlement line for a payment
// ferropay does not know, reconciled with `ferropay reconcile --file`) and replays the dead
// letter; opens a payment the buyer's bank disputed (card 4000 0000 0000 2685: the PSP runs with
// a one-second dispute delay) and its dispute's page; a form posted without its CSRF token is
// refused; no page works without the session.
// A screenshot of each page goes to tests/browser/screenshots/console-*.png.
//
// Run by .ci/run with the buyer's tests: `npm test` in tests/browser, FERROPAY_BIN naming the
// binary (default: ../../target/debug/ferropay).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.FERROPAY_BIN || join(here, "../../target/debug/ferropay");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = join(here, "screenshots");
const WAIT_MS = 30_000;
const DESKTOP = { width: 1360, height: 900 };
const PSP_KEY = "psk_console_browser";
const PSP_SECRET = "whsec_console_browser";

let work, database, server, psp, pspPort, baseUrl, operatorKey, paymentsKey, browser;

function waitForLine(stream, pattern) {
  return new Promise((resolve, reject) => {
    let seen = "";
    const onData = (chunk) => {
      seen += chunk.toString();
      const match = seen.match(pattern);
      if (match) {
        stream.off("data", onData);
        resolve(match);
      }
    };
    stream.on("data", onData);
    setTimeout(() => reject(new Error(`not printed within ${WAIT_MS} ms: ${pattern}\n${seen}`)), WAIT_MS);
  });
}

/** A port nothing listens on now (the PSP's, started and stopped at will). */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it is truthy, for at most WAIT_MS. */
async function eventually(what, check) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`not within ${WAIT_MS} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startPsp() {
  psp = spawn(BIN, [
    "sandbox-psp", "--listen", `127.0.0.1:${pspPort}`,
    "--webhook-url", `${baseUrl}/webhooks/psp/sandbox`,
    "--webhook-secret", PSP_SECRET, "--api-key", PSP_KEY,
    "--merchant-name", "Acme Outdoor Market", "--dispute-delay-s", "1",
  ], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, FERROPAY_LOG: "warn" } });
  psp.stderr.resume();
  await eventually("the PSP answers", async () => {
    try {
      return (await fetch(`http://127.0.0.1:${pspPort}/favicon.ico`)).status === 200;
    } catch {
      return false;
    }
  });
}

async function stopPsp() {
  const exited = new Promise((r) => psp.once("exit", r));
  psp.kill("SIGTERM");
  await exited;
}

function api(path, { method = "GET", key = paymentsKey, body, idempotencyKey } = {}) {
  const headers = { authorization: `Bearer ${key}` };
  if (body) headers["content-type"] = "application/json";
  if (idempotencyKey) headers["idempotency-key"] = idempotencyKey;
  return fetch(`${baseUrl}${path}`, { method, headers, body: body && JSON.stringify(body) });
}

let checkouts = 0;
function createPayment() {
  checkouts += 1;
  const checkout = `chk_console_${Date.now()}_${checkouts}`;
  return api("/v1/payments", {
    method: "POST",
    idempotencyKey: checkout,
    body: {
      checkout_id: checkout,
      buyer: { id: "buyer_console", email: "buyer@example.com" },
      currency: "USD",
      orders: [
        { order_id: "ord_tent", seller_id: "seller_tents", amount: 12900 },
        { order_id: "ord_lamp", seller_id: "seller_lamps", amount: 2450 },
      ],
    },
  });
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "ferropay-console-"));
  mkdirSync(SHOTS, { recursive: true });
  database = `sqlite://${work}/ferropay.db`;
  const key = (scope) => JSON.parse(execFileSync(BIN, [
    "api-key", "create", "--database-url", database, "--name", `console ${scope}`, "--scope", scope,
  ], { encoding: "utf8" })).secret;
  operatorKey = key("operator");
  paymentsKey = key("payments");
  pspPort = await freePort();
  server = spawn(BIN, [
    "serve", "--listen", "127.0.0.1:0", "--database-url", database, "--reconcile-at", "off",
    "--psp-url", `http://127.0.0.1:${pspPort}`, "--psp-api-key", PSP_KEY,
    "--psp-webhook-secret", PSP_SECRET, "--job-max-attempts", "1", "--job-retry-window-s", "0",
  ], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, FERROPAY_LOG: "warn" } });
  [, baseUrl] = await waitForLine(server.stderr, /ferropay is serving on (http:\/\/\S+)/);
  server.stderr.resume();
  await startPsp();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  psp?.kill("SIGTERM");
  if (work) rmSync(work, { recursive: true, force: true });
});

async function newConsole() {
  const context = await browser.newContext({ viewport: DESKTOP });
  return { context, page: await context.newPage() };
}

async function signIn(page, key = operatorKey) {
  await page.goto(`${baseUrl}/console/login`);
  await page.getByLabel("API key").fill(key);
  await Promise.all([
    page.waitForURL(`${baseUrl}/console`),
    page.getByRole("button", { name: "Sign in" }).click(),
  ]);
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, `console-${name}.png`), fullPage: true });

/** Pays `payment` with `card` (4242 by default) on the PSP's hosted page, in its own tab. */
async function pay(context, payment, card = "4242 4242 4242 4242") {
  const page = await context.newPage();
  await page.goto(payment.redirect_url);
  await page.getByLabel("Card number").fill(card);
  await page.getByLabel("Expiry date").fill("12/34");
  await page.getByLabel("Security code").fill("123");
  await page.getByLabel("Name on card").fill("Ada Lovelace");
  await Promise.all([
    page.waitForURL(/\/payments\/pay_[^/]+\/status/, { timeout: WAIT_MS }),
    page.getByRole("button", { name: /^Pay / }).click(),
  ]);
  await page.close();
}

test("no console page works without a session", async () => {
  const { context, page } = await newConsole();
  for (const path of ["/console", "/console/payments", "/console/ledger", "/console/dead-letters"]) {
    await page.goto(`${baseUrl}${path}`);
    assert.equal(page.url(), `${baseUrl}/console/login`, `${path} sends to the sign-in form`);
  }
  await page.getByLabel("API key").fill("sk_not_a_key");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator('[data-error="login"]').waitFor();
  assert.equal(page.url(), `${baseUrl}/console/login`);
  assert.ok(!(await page.content()).includes("sk_not_a_key"), "the key is never shown back");
  await shot(page, "login");
  // A forged session cookie opens nothing either.
  await context.addCookies([{ name: "ferropay_console", value: "cs_forged", url: `${baseUrl}/console` }]);
  await page.goto(`${baseUrl}/console/payments`);
  assert.equal(page.url(), `${baseUrl}/console/login`);
  await context.close();
});

test("an operator finds a paid payment, reads its timeline and sees a refund made through the API", async () => {
  const { context, page } = await newConsole();
  const created = await createPayment();
  assert.equal(created.status, 201);
  const payment = await created.json();
  await pay(context, payment);
  await eventually("the payment succeeds", async () =>
    (await (await api(`/v1/payments/${payment.id}`)).json()).status === "succeeded");

  await signIn(page);
  assert.equal(new URL(page.url()).pathname, "/console");
  await page.locator("#today").waitFor();
  await shot(page, "overview");

  // The payments list, filtered to succeeded, then the payment's own page.
  await page.getByRole("link", { name: "Payments", exact: true }).click();
  await page.getByLabel("Status").selectOption("succeeded");
  await page.getByRole("button", { name: "Search" }).click();
  const row = page.locator(`tr[data-payment="${payment.id}"]`);
  await row.waitFor();
  await shot(page, "payments");
  await row.getByRole("link", { name: payment.id }).click();
  await page.locator("#timeline").waitFor();
  assert.equal(await page.locator("#status [data-status]").getAttribute("data-status"), "succeeded");
  assert.equal(await page.locator("#amount").innerText(), "153.50 USD");
  const timeline = await page.locator("#timeline").innerText();
  for (const moment of ["created", "registered at the PSP", "webhook received: payment.succeeded", "journal: capture"]) {
    assert.ok(timeline.includes(moment), `the timeline shows "${moment}": ${timeline}`);
  }

  // A refund through the API; the page shows it once the PSP has paid it back.
  const refund = await api(`/v1/payments/${payment.id}/refunds`, {
    method: "POST", idempotencyKey: `refund-${payment.id}`,
    body: { order_id: "ord_lamp", amount: 2450 },
  });
  assert.equal(refund.status, 201);
  const { id: refundId } = await refund.json();
  await eventually("the console shows the refund succeeded", async () => {
    await page.reload();
    const status = page.locator(`tr[data-refund="${refundId}"] [data-status]`);
    return (await status.count()) > 0 && (await status.getAttribute("data-status")) === "succeeded";
  });
  assert.equal(await page.locator("#status [data-status]").getAttribute("data-status"), "partially_refunded");
  assert.ok((await page.locator("#timeline").innerText()).includes("journal: refund"));
  await shot(page, "payment");

  // The seller's wallet, the ledger and its verification on demand.
  await page.getByRole("link", { name: "seller_tents" }).click();
  await page.locator("#wallet").waitFor();
  assert.ok((await page.locator("#wallet").innerText()).includes("129.00 USD"));
  await shot(page, "seller");
  await page.getByRole("link", { name: "Ledger", exact: true }).click();
  await page.locator('#trial-balance tr[data-account="psp_receivable:sandbox"]').waitFor();
  await shot(page, "ledger");
  await page.getByRole("button", { name: "Verify the ledger now" }).click();
  await page.locator('#verify[data-ok="true"]').waitFor();
  assert.equal(await page.locator('#totals tr[data-currency="USD"] [data-total]').getAttribute("data-total"), "0");
  await shot(page, "ledger-verified");
  await context.close();
});

test("an operator opens a disputed payment and reads its dispute", async () => {
  const { context, page } = await newConsole();
  const created = await createPayment();
  assert.equal(created.status, 201);
  const payment = await created.json();
  await pay(context, payment, "4000 0000 0000 2685");
  // A second after the payment succeeds, the buyer's bank disputes it.
  const dispute = await eventually("the payment is disputed", async () =>
    (await (await api(`/v1/payments/${payment.id}/disputes`)).json()).data[0]);

  await signIn(page);
  await page.goto(`${baseUrl}/console/payments/${payment.id}`);
  await page.locator(`#disputes tr[data-dispute="${dispute.id}"]`).waitFor();
  assert.ok((await page.locator("#timeline").innerText()).includes(`dispute ${dispute.id} opened`));
  await page.locator("#disputes").getByRole("link", { name: dispute.id }).click();
  await page.locator('#dispute[data-status="needs_response"]').waitFor();
  assert.equal(await page.locator("#disputed-amount").innerText(), "153.50 USD");
  assert.equal(await page.locator("#reason").innerText(), "fraudulent");
  assert.ok((await page.locator("#history").innerText()).includes("dispute.created"));
  assert.ok((await page.locator("#dispute-transactions").innerText()).includes(`chargeback:${dispute.psp_dispute_id}`));
  await shot(page, "dispute");

  // The disputes tab lists it; filtered by status, it is among those that need a response.
  await page.getByRole("link", { name: "Disputes", exact: true }).click();
  await page.getByLabel("Status").selectOption("needs_response");
  await page.getByRole("button", { name: "Show" }).click();
  await page.locator(`#disputes tr[data-dispute="${dispute.id}"]`).waitFor();
  await shot(page, "disputes");
  await context.close();
});

test("an operator resolves a reconciliation break", async () => {
  const file = join(work, "settlement.csv");
  writeFileSync(file, [
    "psp_reference,merchant_reference,type,created_at,currency,gross,fee,net,batch",
    "psp_ghost_1,pay_ghost_1,payment,2026-11-28T10:00:00Z,USD,4200,152,4048,stl_console",
  ].join("\n") + "\n");
  execFileSync(BIN, [
    "reconcile", "--file", file, "--database-url", database,
    "--psp-url", `http://127.0.0.1:${pspPort}`, "--psp-api-key", PSP_KEY,
  ], { encoding: "utf8", env: { ...process.env, FERROPAY_LOG: "warn" } });

  const { context, page } = await newConsole();
  await signIn(page);
  await page.getByRole("link", { name: "Reconciliation", exact: true }).click();
  const row = page.locator("#breaks tr", { hasText: "pay_ghost_1" });
  await row.waitFor();
  await shot(page, "reconciliation");
  await row.locator("a").first().click();
  await page.locator("#resolve").waitFor();
  await page.getByLabel(/Why is this break resolved/).fill("A test charge at the PSP, not one of ours.");
  await page.getByRole("button", { name: "Resolve the break" }).click();
  await page.locator('#break[data-status="resolved"]').waitFor();
  assert.equal(await page.locator("#resolution").innerText(), "A test charge at the PSP, not one of ours.");
  assert.equal(await page.locator("#resolve").count(), 0, "a resolved break has no form");
  await shot(page, "break");
  await context.close();
});

test("an operator replays a dead letter once its cause is fixed", async () => {
  // The PSP is down: the payment's registration fails and, with one attempt allowed, dies.
  await stopPsp();
  const created = await createPayment();
  assert.equal(created.status, 503);
  const { context, page } = await newConsole();
  await signIn(page);
  await page.goto(`${baseUrl}/console/dead-letters`);
  const row = page.locator("#dead-letters tr[data-job]");
  await eventually("the job is dead-lettered", async () => {
    await page.reload();
    return (await row.count()) > 0;
  });
  await shot(page, "dead-letters");
  const paymentId = (await row.first().locator("td").nth(2).innerText()).trim();
  await row.first().locator("a").first().click();
  await page.locator('#job[data-status="dead"]').waitFor();
  await shot(page, "dead-letter");

  // The PSP is back: replay, and a worker registers the payment.
  await startPsp();
  // The replay is a form post: its page must have loaded before the test reloads it (a reload
  // during the post's navigation detaches the page, as CI once saw).
  await Promise.all([
    page.waitForNavigation({ waitUntil: "load" }),
    page.getByRole("button", { name: "Replay this job" }).click(),
  ]);
  await eventually("the replayed job is done", async () => {
    await page.reload();
    return (await page.locator('#job[data-status="done"]').count()) > 0;
  });
  const payment = await (await api(`/v1/payments/${paymentId}`)).json();
  assert.ok(payment.redirect_url, "the payment has its PSP session now");
  await page.goto(`${baseUrl}/console/dead-letters`);
  assert.equal(await page.locator("#dead-letters tr[data-job]").count(), 0);
  await context.close();
});

test("a form posted without its CSRF token is refused and changes nothing", async () => {
  const { context, page } = await newConsole();
  await signIn(page);
  // Another site's form would post the same fields without the token: sent with this
  // browser's session cookie (the console's Content-Security-Policy keeps its own pages from
  // scripting such a request), it is refused.
  const forged = await page.request.post(`${baseUrl}/console/ledger/verify`, {
    form: {}, maxRedirects: 0,
  });
  assert.equal(forged.status(), 403);
  assert.ok((await forged.text()).includes("csrf_failed"));
  const blocked = await page.evaluate(() => fetch("/console/ledger/verify", { method: "POST" })
    .then(() => "sent", () => "blocked"));
  assert.equal(blocked, "blocked", "the page's CSP allows no script-made request");
  // The page's own form, with its token removed before it is sent.
  await page.goto(`${baseUrl}/console/ledger`);
  await page.locator('form[action="/console/ledger/verify"] input[name="csrf"]').evaluate((el) => el.remove());
  await page.getByRole("button", { name: "Verify the ledger now" }).click();
  await page.locator('[data-code="csrf_failed"]').waitFor();
  await shot(page, "csrf-refused");
  // Signing out: no page works any more with that cookie.
  await page.goto(`${baseUrl}/console`);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${baseUrl}/console/login`);
  await page.goto(`${baseUrl}/console/deliveries`);
  assert.equal(page.url(), `${baseUrl}/console/login`);
  await context.close();
});
