// A buyer in a real browser: Debian's Chromium, headless, driven by playwright-core. It starts
// the built `ferropay serve` (SQLite in a temporary directory, the in-process sandbox PSP with
// its webhooks held back, so that the moment between the PSP's redirect and its webhook can be
// seen), pays with every test card through the hosted page and the 3-D Secure challenge, and
// checks what the buyer reads at each step. Screenshots at a phone and a desktop width go to
// tests/browser/screenshots/.
//
// Run by .ci/run after the Rust tests: `npm ci && npm test` in tests/browser, with FERROPAY_BIN
// naming the binary (default: ../../target/debug/ferropay).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.FERROPAY_BIN || join(here, "../../target/debug/ferropay");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = join(here, "screenshots");
// The PSP's webhook arrives this long after the buyer is sent back: long enough to see
// "confirming" on a loaded machine, short enough to keep the run quick.
const WEBHOOK_LATENCY_MS = 2500;
const REVIEW_DELAY_S = 4;
const WAIT_MS = 30_000;
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 860 };
// What a buyer must never read: internal statuses and failure codes.
const INTERNAL = [
  "requires_payment", "executing", "not_started", "succeeded", "processing_error",
  "card_declined", "insufficient_funds", "authentication_failed", "psp_rejected",
];

let work, server, api, context;

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

before(async () => {
  work = mkdtempSync(join(tmpdir(), "ferropay-browser-"));
  mkdirSync(SHOTS, { recursive: true });
  const database = `sqlite://${work}/ferropay.db`;
  const key = JSON.parse(
    execFileSync(BIN, ["api-key", "create", "--database-url", database], { encoding: "utf8" }),
  ).secret;
  server = spawn(BIN, [
    "serve", "--listen", "127.0.0.1:0", "--sandbox-listen", "127.0.0.1:0",
    "--database-url", database, "--reconcile-at", "off",
    "--review-delay-s", String(REVIEW_DELAY_S),
    "--sandbox-webhook-latency-ms", String(WEBHOOK_LATENCY_MS),
    "--sandbox-merchant-name", "Acme Outdoor Market",
  ], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, FERROPAY_LOG: "warn" } });
  const [, baseUrl] = await waitForLine(server.stderr, /ferropay is serving on (http:\/\/\S+)/);
  server.stderr.resume(); // keep draining it, so that the server never blocks on a full pipe
  api = { baseUrl, key };
  context = await chromium.launchPersistentContext(join(work, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: DESKTOP,
  });
});

after(async () => {
  await context?.close();
  server?.kill("SIGTERM");
  if (work) rmSync(work, { recursive: true, force: true });
});

let checkouts = 0;
async function createPayment(orders) {
  checkouts += 1;
  const checkout = `chk_browser_${Date.now()}_${checkouts}`;
  const response = await fetch(`${api.baseUrl}/v1/payments`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${api.key}`,
      "idempotency-key": checkout,
      "content-type": "application/json",
    },
    body: JSON.stringify({
      checkout_id: checkout,
      buyer: { id: "buyer_browser", email: "buyer@example.com" },
      currency: "USD",
      orders: orders ?? [
        { order_id: "ord_tent", seller_id: "seller_a", amount: 12900 },
        { order_id: "ord_lamp", seller_id: "seller_b", amount: 2450 },
      ],
    }),
  });
  assert.equal(response.status, 201);
  return response.json();
}

async function newPage(viewport) {
  const page = await context.newPage();
  await page.setViewportSize(viewport);
  return page;
}

/** The text the buyer reads (no markup, no attributes). */
const visibleText = (page) => page.locator("body").innerText();

async function assertNothingInternal(page) {
  const text = await visibleText(page);
  for (const word of INTERNAL) assert.ok(!text.includes(word), `the buyer reads "${word}": ${text}`);
}

async function fillCard(page, card, { exp = "1234", cvc = "123", name = "Ada Lovelace" } = {}) {
  await page.getByLabel("Card number").click();
  await page.keyboard.type(card);
  await page.getByLabel("Expiry date").click();
  await page.keyboard.type(exp);
  await page.getByLabel("Security code").click();
  await page.keyboard.type(cvc);
  if (name) {
    await page.getByLabel("Name on card").click();
    await page.keyboard.type(name);
  }
}

/** Pays and waits until the browser is back on ferropay's status page. */
async function submitAndReturn(page, button = /^Pay /) {
  await Promise.all([
    page.waitForURL(/\/payments\/pay_[^/]+\/status\?/, { timeout: WAIT_MS }),
    page.getByRole("button", { name: button }).click(),
  ]);
  return new URL(page.url()).searchParams.get("status");
}

/** Back from the PSP, before its webhook: "confirming", never an offer to pay again. */
async function assertConfirming(page, shot) {
  const state = await page.locator("main").getAttribute("data-state");
  assert.equal(state, "confirming", "between the redirect and the webhook the page confirms");
  await page.getByRole("heading", { name: "Confirming your payment…" }).waitFor();
  assert.equal(await page.getByRole("link", { name: /pay/i }).count(), 0, "no link to pay again");
  await assertNothingInternal(page);
  if (shot) await page.screenshot({ path: join(SHOTS, shot), fullPage: true });
}

async function waitForOutcome(page, state, heading) {
  await page.waitForSelector(`main[data-state="${state}"]`, { timeout: WAIT_MS });
  await page.getByRole("heading", { name: heading }).waitFor();
  await assertNothingInternal(page);
}

test("the hosted page looks and acts like a checkout", async () => {
  const payment = await createPayment();
  const page = await newPage(PHONE);
  await page.goto(payment.redirect_url);
  await page.getByText("Acme Outdoor Market").waitFor();
  await page.getByText("153.50 USD").first().waitFor();
  const number = page.getByLabel("Card number");
  assert.equal(await number.getAttribute("placeholder"), "1234 1234 1234 1234");
  assert.equal(await number.inputValue(), "", "an empty form looks empty");
  assert.ok(await number.evaluate((el) => el === document.activeElement), "the card number has the focus");

  // The brand is named and the number grouped as it is typed.
  await number.click();
  await page.keyboard.type("42424242");
  assert.equal(await page.locator("#card-brand").innerText(), "Visa");
  assert.equal(await number.inputValue(), "4242 4242");
  await page.keyboard.type("42424241");
  assert.equal(await number.inputValue(), "4242 4242 4242 4241");

  // Focus order: number, expiry, CVC, name, the pay button.
  const order = [];
  for (let i = 0; i < 4; i++) {
    await page.keyboard.press("Tab");
    order.push(await page.evaluate(() => document.activeElement.id || document.activeElement.tagName));
  }
  assert.deepEqual(order, ["exp", "cvc", "name", "BUTTON"]);

  // Each field says what is wrong when it is left; submitting focuses the first wrong one.
  assert.match(await page.locator("#card_number-error").innerText(), /not valid/);
  assert.equal(await number.getAttribute("aria-invalid"), "true");
  await page.getByLabel("Expiry date").click();
  await page.keyboard.type("1");
  assert.equal(await page.getByLabel("Expiry date").inputValue(), "1");
  await page.keyboard.type("330");
  assert.equal(await page.getByLabel("Expiry date").inputValue(), "13/30", "the slash comes by itself");
  await page.getByLabel("Security code").click();
  assert.match(await page.locator("#exp-error").innerText(), /month/);
  await page.getByRole("button", { name: /^Pay / }).click();
  assert.ok(await number.evaluate((el) => el === document.activeElement), "the first wrong field has the focus");
  assert.match(await page.locator("#cvc-error").innerText(), /security code/);
  assert.ok(page.url().includes("/pay/"), "nothing was sent");

  // Fixed, it pays; the phone screenshot of a filled form first.
  await number.fill("");
  await number.click();
  await page.keyboard.type("4242424242424242");
  assert.equal(await number.getAttribute("aria-invalid"), null, "fixed as typed");
  await page.getByLabel("Expiry date").fill("");
  await page.getByLabel("Expiry date").click();
  await page.keyboard.type("1234");
  await page.getByLabel("Security code").click();
  await page.keyboard.type("123");
  await page.getByLabel("Name on card").click();
  await page.keyboard.type("Ada Lovelace");
  await page.screenshot({ path: join(SHOTS, "hosted-page-phone.png"), fullPage: true });
  assert.equal(await submitAndReturn(page), "succeeded");
  await assertConfirming(page, "status-confirming-phone.png");
  await waitForOutcome(page, "paid", "Thank you, your payment went through");
  await page.screenshot({ path: join(SHOTS, "status-paid-phone.png"), fullPage: true });
  await page.close();
});

test("4242 at desktop width: paid, with the order", async () => {
  const payment = await createPayment();
  const page = await newPage(DESKTOP);
  await page.goto(payment.redirect_url);
  await page.screenshot({ path: join(SHOTS, "hosted-page-desktop.png"), fullPage: true });
  await fillCard(page, "4242424242424242");
  assert.equal(await submitAndReturn(page), "succeeded");
  await assertConfirming(page, "status-confirming-desktop.png");
  await waitForOutcome(page, "paid", "Thank you, your payment went through");
  const text = await visibleText(page);
  assert.match(text, /You paid 153\.50 USD/);
  assert.match(text, /ord_tent/);
  await page.screenshot({ path: join(SHOTS, "status-paid-desktop.png"), fullPage: true });
  await page.close();
});

for (const [card, why] of [
  ["4000000000000002", /declined the payment without giving a reason/],
  ["4000000000009995", /not have enough funds/],
]) {
  test(`${card}: declined, in plain words, with a way forward`, async () => {
    const payment = await createPayment();
    const page = await newPage(DESKTOP);
    await page.goto(payment.redirect_url);
    await fillCard(page, card);
    assert.equal(await submitAndReturn(page), "failed");
    await assertConfirming(page);
    await waitForOutcome(page, "failed", "Your card was declined");
    const text = await visibleText(page);
    assert.match(text, why);
    assert.match(text, /You have not been charged/);
    assert.match(text, /try again/i);
    if (card.endsWith("0002")) await page.screenshot({ path: join(SHOTS, "status-declined-desktop.png"), fullPage: true });
    await page.close();
  });
}

for (const [code, status, state, heading] of [
  ["123456", "succeeded", "paid", "Thank you, your payment went through"],
  ["000000", "failed", "failed", "Your bank could not confirm it was you"],
]) {
  test(`4000 0025 0000 3155 with 3-D Secure code ${code}`, async () => {
    const payment = await createPayment();
    const page = await newPage(PHONE);
    await page.goto(payment.redirect_url);
    await fillCard(page, "4000002500003155");
    await page.getByRole("button", { name: /^Pay / }).click();
    await page.getByRole("heading", { name: "Confirm it's you" }).waitFor();
    const code_input = page.getByLabel("Six-digit code");
    assert.ok(await code_input.evaluate((el) => el === document.activeElement), "the code has the focus");
    if (code === "123456") await page.screenshot({ path: join(SHOTS, "challenge-phone.png"), fullPage: true });
    await page.keyboard.type(code);
    assert.equal(await submitAndReturn(page, "Confirm"), status);
    await assertConfirming(page);
    await waitForOutcome(page, state, heading);
    await page.close();
  });
}

test("4000 0000 0000 0259: held for review, then paid", async () => {
  const payment = await createPayment();
  const page = await newPage(DESKTOP);
  await page.goto(payment.redirect_url);
  await fillCard(page, "4000000000000259");
  assert.equal(await submitAndReturn(page), "processing");
  await assertConfirming(page);
  await waitForOutcome(page, "in_review", "Your payment is being checked");
  await waitForOutcome(page, "paid", "Thank you, your payment went through");
  await page.close();
});

test("4000 0000 0000 0119: a processing error keeps what was typed, and another try pays", async () => {
  const payment = await createPayment();
  const page = await newPage(PHONE);
  await page.goto(payment.redirect_url);
  await fillCard(page, "4000000000000119");
  await page.getByRole("button", { name: /^Pay / }).click();
  await page.getByRole("alert").waitFor();
  assert.match(await page.getByRole("alert").innerText(), /could not be processed/);
  assert.ok(await page.getByRole("alert").evaluate((el) => el === document.activeElement), "the message is read first");
  assert.equal(await page.getByLabel("Card number").inputValue(), "4000 0000 0000 0119");
  assert.equal(await page.getByLabel("Expiry date").inputValue(), "12/34");
  assert.equal(await page.getByLabel("Security code").inputValue(), "123", "nothing cleared silently");
  assert.equal(await page.getByLabel("Name on card").inputValue(), "Ada Lovelace");
  await assertNothingInternal(page);
  await page.screenshot({ path: join(SHOTS, "processing-error-phone.png"), fullPage: true });

  await page.getByLabel("Card number").fill("");
  await page.getByLabel("Card number").click();
  await page.keyboard.type("4242424242424242");
  assert.equal(await submitAndReturn(page), "succeeded");
  await assertConfirming(page);
  await waitForOutcome(page, "paid", "Thank you, your payment went through");
  await page.close();
});

test("both servers have a favicon", async () => {
  const payment = await createPayment();
  const psp = new URL(payment.redirect_url).origin;
  for (const origin of [api.baseUrl, psp]) {
    const response = await fetch(`${origin}/favicon.ico`);
    assert.equal(response.status, 200, origin);
    assert.equal(response.headers.get("content-type"), "image/x-icon");
  }
});
