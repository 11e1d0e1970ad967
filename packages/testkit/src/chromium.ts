// Headless Chromium for page tests (the status page, bench and simulate reports): Debian's `chromium`
// driven by playwright-core, with a fresh profile in a temp folder and the flags that keep it off the
// network. Every page opened here records console errors, uncaught exceptions and any request that tried
// to leave loopback, so a test can assert that a page rendered cleanly and offline.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's package installs it here; PDSERVE_CHROMIUM points elsewhere. */
export const CHROMIUM_BINARY = process.env['PDSERVE_CHROMIUM'] ?? '/usr/bin/chromium';

/**
 * Flags that work on these machines: no sandbox (tests run as root), no GPU, and nothing that phones home
 * (the network is closed; background requests would fail by the dozen at every start).
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** How long launching may take, and each page action (load, wait for a selector), in ms. */
export const CHROMIUM_LAUNCH_TIMEOUT_MS = 30_000;
export const PAGE_TIMEOUT_MS = 15_000;

export interface PageProblems {
  /** console.error messages (and console warnings about failed loads). */
  readonly consoleErrors: readonly string[];
  /** Uncaught exceptions thrown by the page's scripts. */
  readonly pageErrors: readonly string[];
  /** Requests to anything but loopback, file:, data: or blob: (they are refused, never sent). */
  readonly offLoopbackRequests: readonly string[];
  /** Requests that failed (refused above, or a loopback request that errored). */
  readonly failedRequests: readonly string[];
}

export interface WatchedPage {
  readonly page: Page;
  /** What went wrong on this page so far. */
  problems(): PageProblems;
}

export interface HeadlessChromium {
  /** Opens a page whose console errors, exceptions and requests are recorded. */
  newPage(opts?: { readonly width?: number; readonly height?: number }): Promise<WatchedPage>;
  /** Closes the browser and removes its profile folder. */
  close(): Promise<void>;
}

const LOCAL_URL = /^(file:|data:|blob:|about:|https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\/)/;

/** Starts Chromium with a fresh profile under `dir` (a temp folder of its own when omitted). */
export async function launchChromium(opts: { readonly dir?: string } = {}): Promise<HeadlessChromium> {
  const profile = mkdtempSync(join(opts.dir ?? tmpdir(), 'chromium-profile-'));
  let context: BrowserContext;
  try {
    // A persistent context is the way to hand Chromium a --user-data-dir of our own.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_BINARY,
      headless: true,
      args: [...CHROMIUM_ARGS],
      timeout: CHROMIUM_LAUNCH_TIMEOUT_MS,
      viewport: { width: 1280, height: 900 },
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw new Error(`could not start ${CHROMIUM_BINARY} (install it with \`apt-get install chromium\`): ${(err as Error).message}`);
  }
  context.setDefaultTimeout(PAGE_TIMEOUT_MS);
  return {
    async newPage(size = {}) {
      const page = await context.newPage();
      await page.setViewportSize({ width: size.width ?? 1280, height: size.height ?? 900 });
      const consoleErrors: string[] = [];
      const pageErrors: string[] = [];
      const failedRequests: string[] = [];
      const offLoopback: string[] = [];
      // Refuse anything that would leave the machine: a page that needs the network fails its test.
      await page.route(
        (url) => !LOCAL_URL.test(url.href),
        (route) => {
          offLoopback.push(route.request().url());
          return route.abort('blockedbyclient');
        },
      );
      page.on('console', (m) => {
        if (m.type() === 'error') consoleErrors.push(m.text());
      });
      page.on('pageerror', (e) => pageErrors.push(e.message));
      page.on('requestfailed', (r) => failedRequests.push(`${r.url()}: ${r.failure()?.errorText ?? 'failed'}`));
      return {
        page,
        problems: () => ({
          consoleErrors: [...consoleErrors],
          pageErrors: [...pageErrors],
          offLoopbackRequests: [...offLoopback],
          failedRequests: [...failedRequests],
        }),
      };
    },
    async close() {
      try {
        await context.close();
      } finally {
        rmSync(profile, { recursive: true, force: true });
      }
    },
  };
}

/** Size of the drawn charts (canvas or svg) on a page, in CSS pixels: a test expects every one nonzero. */
export async function chartSizes(page: Page): Promise<{ readonly tag: string; readonly width: number; readonly height: number }[]> {
  return page.$$eval('canvas, svg', (els) =>
    els.map((e) => {
      const r = e.getBoundingClientRect();
      return { tag: e.tagName.toLowerCase(), width: r.width, height: r.height };
    }),
  );
}
