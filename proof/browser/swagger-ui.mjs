// A real browser on Swagger UI: headless Chromium (Debian's, never a downloaded one) opens
// /docs, proves that no request leaves the server it came from, uses "Try it out" on
// GET /api/users/{username} and sees the 200 with the user in it. A screenshot is kept.
//
//   node swagger-ui.mjs --base http://127.0.0.1:3000 --user alice --shot ../../target/proof/swagger-ui.png
//
// Exit 0 on success; 1 with the reason otherwise. Bounded: every wait has a timeout.

import { chromium } from 'playwright-core';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback !== undefined) return fallback;
  console.error(`missing --${name}`);
  process.exit(2);
}

const base = arg('base');
const username = arg('user');
const shot = arg('shot', 'swagger-ui.png');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const origin = new URL(base).origin;

const loopback = (url) => {
  const u = new URL(url);
  return ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
};

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // As root (CI), Chromium refuses its sandbox; nothing here is untrusted content.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  timeout: 60_000,
});
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1800 } });
  const requests = [];
  const outside = [];
  // Every request is recorded; one that would leave this machine is also stopped here.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
    requests.push(url);
    if (!loopback(url) || new URL(url).origin !== origin) {
      outside.push(url);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  page.on('pageerror', (err) => consoleErrors.push(String(err)));
  page.setDefaultTimeout(30_000);

  const docs = await page.goto(`${base}/docs`, { waitUntil: 'networkidle' });
  if (docs.status() !== 200) throw new Error(`/docs answered ${docs.status()}`);
  await page.waitForSelector('.swagger-ui .opblock');
  const title = (await page.textContent('.swagger-ui .info .title'))?.trim();

  const op = page.locator('#operations-Users-get_user');
  await op.locator('.opblock-summary').first().click();
  await op.getByRole('button', { name: 'Try it out' }).click();
  await op.locator('tr[data-param-name="username"] input').fill(username);
  const answered = page.waitForResponse(
    (r) => r.url() === `${origin}/api/users/${encodeURIComponent(username)}`,
  );
  await op.getByRole('button', { name: 'Execute' }).click();
  const response = await answered;
  // What the page shows, not only what the network saw.
  const status = op.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor();
  const shownStatus = (await status.textContent()).trim();
  const shownBody = await op
    .locator('.live-responses-table .response .response-col_description pre')
    .first()
    .textContent();
  await page.screenshot({ path: shot, fullPage: true });

  const problems = [];
  if (outside.length) problems.push(`requests leaving ${origin}: ${outside.join(', ')}`);
  if (response.status() !== 200) problems.push(`the API answered ${response.status()}`);
  if (!shownStatus.startsWith('200')) problems.push(`Swagger UI shows status ${shownStatus}`);
  if (!shownBody.includes(`"username": "${username}"`)) {
    problems.push(`Swagger UI's response body lacks the user: ${shownBody.slice(0, 300)}`);
  }
  if (consoleErrors.length) problems.push(`console errors: ${consoleErrors.join(' | ')}`);
  console.log(
    `browser: ${(await browser.version())} loaded ${base}/docs ("${title}"), ` +
      `${requests.length} requests, all to ${origin}; ` +
      `Try it out GET /api/users/{username} -> ${shownStatus}; screenshot ${shot}`,
  );
  if (problems.length) failed = problems.join('\n');
} catch (err) {
  failed = err.stack || String(err);
} finally {
  await browser.close();
}
if (failed) {
  console.error(`browser test FAILED:\n${failed}`);
  process.exit(1);
}
