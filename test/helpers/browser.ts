/**
 * Debian's Chromium, driven by playwright-core, for the browser tests (installed by .ci/run). Headless, with a
 * fresh profile per launch, no background traffic (updates, sync, QUIC) of its own, and no host name resolving
 * but localhost, so a page under test cannot reach the network (the tests also check every request).
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
];

/** Launches Chromium, or returns undefined when it is not installed (call `requireBrowser` in the test). */
export async function launchChromium(): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM)) return undefined;
  // launch() gives the browser a fresh, empty profile of its own and removes it on close.
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/** The browser, or a clear failure saying how to install it. */
export function requireBrowser(browser: Browser | undefined): Browser {
  if (!browser) {
    throw new Error(`This test needs Chromium at ${CHROMIUM}. Install it with: sudo apt-get update && sudo apt-get install -y chromium`);
  }
  return browser;
}

/** Runs `js` (an expression) in the page. Strings, because this project compiles without the DOM types. */
export function inPage<T>(page: Page, js: string): Promise<T> {
  return page.evaluate(js) as Promise<T>;
}
