/**
 * Opens a page in the machine's real headless Chromium (Debian's
 * `chromium`, or `CHROMIUM_PATH`) through playwright-core, with a fresh
 * profile and the browser's own background traffic switched off, and records
 * every request the page makes, so a test can prove a page fetches nothing.
 *
 *   const b = await openPage(t, pathToFileURL(file).href);
 *   t.equal(await b.page.locator('circle.bubble').count(), 4);
 *   t.same(b.requests, [url]);
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Page } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium package (or set CHROMIUM_PATH)`);

/** The flags a headless check runs with: no sandbox (root in CI), no GPU, none of the browser's own network traffic. */
const CHROMIUM_FLAGS = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

export interface OpenedPage {
  readonly page: Page;
  /** URLs of every request made by the page (the document included), in order. */
  readonly requests: string[];
  /** Console messages of the page (e.g. a Content-Security-Policy refusal). */
  readonly console: string[];
}

export async function openPage(t: TeardownTarget, url: string, viewport = { width: 1150, height: 900 }): Promise<OpenedPage> {
  const profile = mkdtempSync(path.join(tmpdir(), 'chromium-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport,
  });
  t.teardown(() => context.close());
  const requests: string[] = [];
  const console: string[] = [];
  context.on('request', (r) => requests.push(r.url()));
  // Anything not from disk would be refused here as well as recorded.
  await context.route(/^(?!file:)/, (route) => route.abort());
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => console.push(m.text()));
  await page.goto(url, { waitUntil: 'load' });
  return { page, requests, console };
}
