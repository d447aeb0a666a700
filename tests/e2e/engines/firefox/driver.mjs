// A thin driver for the cross-engine scenarios: Debian's firefox-esr over WebDriver BiDi.
// It reads one JSON command per line on stdin and answers one JSON line on stdout:
//   {id, op: "profile"}                      -> {id, ok: profileId}   (a fresh browser context)
//   {id, op: "open", profile, url}           -> {id, ok: tabId}
//   {id, op: "goto" | "reload" | "close" | "hide" | "show", tab, url?}
// A tab is a window of its own (visible, as every page of headless Chromium is); hiding one
// minimizes its window.
//   {id, op: "call", tab, fn, args}          -> {id, ok: await window.scenario[fn](...args)}
//   {id, op: "dropProfile", profile}
// Anything the scenario decides lives in the pages (tests/e2e/pages/engines/); this file only
// opens, navigates, reloads, closes, hides (minimizes), shows and calls.
import readline from 'node:readline';
import puppeteer from 'puppeteer-core';

const executablePath = process.argv[2] || '/usr/bin/firefox-esr';
const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath,
  headless: true,
  protocolTimeout: 60_000,
  extraPrefsFirefox: {
    // localhost is a secure context; no first-run pages, no updates, no telemetry.
    'browser.shell.checkDefaultBrowser': false,
    'app.update.enabled': false,
    'datareporting.policy.dataSubmissionEnabled': false,
  },
});
// A step, bounded in the page too (a stuck step rejects; the driver stays usable).
const BOUNDED = (name, list, ms) => Promise.race([
  Promise.resolve().then(() => window.scenario[name](...list)),
  new Promise((_, reject) => setTimeout(() => reject(new Error(`step ${name}: no result in ${ms} ms`)), ms)),
]);
const profiles = new Map();
const tabs = new Map();
let next = 1;

const ops = {
  async profile() {
    const id = `p${next++}`;
    profiles.set(id, await browser.createBrowserContext());
    return id;
  },
  async dropProfile({ profile }) {
    const ctx = profiles.get(profile);
    profiles.delete(profile);
    for (const [id, tab] of tabs) if (tab.browserContext() === ctx) tabs.delete(id);
    if (ctx) await ctx.close();
    return null;
  },
  async open({ profile, url }) {
    const page = await profiles.get(profile).newPage({ type: 'window' });
    page.on('console', (m) => { if (m.type() === 'error') process.stderr.write(`console: ${m.text()}\n`); });
    page.on('pageerror', (e) => process.stderr.write(`pageerror: ${e}\n`));
    const id = `t${next++}`;
    tabs.set(id, page);
    if (url) await page.goto(url, { waitUntil: 'load' });
    return id;
  },
  async goto({ tab, url }) { await tabs.get(tab).goto(url, { waitUntil: 'load' }); return null; },
  async reload({ tab }) { await tabs.get(tab).reload({ waitUntil: 'load' }); return null; },
  async hide({ tab }) {
    await browser.setWindowBounds(await tabs.get(tab).windowId(), { windowState: 'minimized' });
    return null;
  },
  async show({ tab }) {
    await browser.setWindowBounds(await tabs.get(tab).windowId(), { windowState: 'normal' });
    return null;
  },
  async close({ tab }) { const page = tabs.get(tab); tabs.delete(tab); await page.close(); return null; },
  async call({ tab, fn, args, ms }) {
    return tabs.get(tab).evaluate(BOUNDED, fn, args || [], ms);
  },
};

process.stdout.write(`${JSON.stringify({ id: 0, ok: browser.version ? await browser.version() : 'firefox' })}\n`);
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  let command;
  try {
    command = JSON.parse(line);
    const ok = await ops[command.op](command);
    process.stdout.write(`${JSON.stringify({ id: command.id, ok: ok ?? null })}\n`);
  } catch (error) {
    process.stdout.write(`${JSON.stringify({ id: command?.id ?? null, error: String(error?.stack || error) })}\n`);
  }
});
lines.on('close', async () => { await browser.close(); process.exit(0); });
