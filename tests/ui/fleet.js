// Drives the fleet web view in headless Chromium for tests/web_view.rs.
//
//   node tests/ui/fleet.js URL SCREENSHOT_DIR
//
// NODE_PATH must hold playwright-core (tests/ui/setup prints the directory);
// CHROMIUM names the browser (default /usr/bin/chromium). Talks to the test in JSON
// lines: prints {"event":"loaded",...} with what the page shows, then
// {"event":"ready"}; on the line `expect CLUSTER STATE` from stdin (sent right after
// the test wrote the status change) it waits at most a second for that cell and
// prints {"event":"seen","ms":...}; then writes the screenshots and prints
// {"event":"done",...}. Any failure prints {"event":"error",...} and exits 1.
"use strict";

const { chromium } = require("playwright-core");
const path = require("path");
const readline = require("readline");

const [url, outDir] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // Root in a container has no user namespaces for Chromium's sandbox.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const consoleErrors = [];
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    const external = [];
    page.on("request", (r) => { if (!r.url().startsWith(url.replace(/\/$/, ""))) external.push(r.url()); });
    await page.goto(url + "#app=web", { waitUntil: "load" });
    await page.waitForSelector("[data-wave] [data-cluster]", { timeout: 10000 });
    await page.waitForSelector("#live[data-live=live]", { timeout: 10000 });
    const loaded = await page.evaluate(() => ({
      waves: [...document.querySelectorAll("[data-wave]")].map((w) => ({
        index: Number(w.dataset.wave),
        cells: [...w.querySelectorAll("[data-cluster]")].map((c) => ({
          cluster: c.dataset.cluster,
          state: c.dataset.state,
          text: c.innerText,
        })),
        gate: w.querySelector(".gate") ? {
          text: w.querySelector(".gate").innerText,
          halted: w.querySelector(".gate").dataset.halted === "true",
        } : null,
      })),
      apps: [...document.querySelectorAll("#apps [data-app]")].map((b) => b.dataset.app),
      releases: [...document.querySelectorAll(".releases [data-release]")].map((b) => b.innerText),
    }));
    say({ event: "loaded", ...loaded });

    // The release picker: the newest release reached the canary only, the older one
    // every cluster.
    const pickedState = () => page.evaluate(() => ({
      heading: [...document.querySelectorAll("h3")].map((h) => h.innerText),
      dimmed: document.querySelectorAll(".cell.dim").length,
      gates: [...document.querySelectorAll("[data-wave] .gate")].map((g) => g.innerText),
    }));
    await page.click(".releases button:nth-child(2)");
    const newest = await pickedState();
    await page.click(".releases button:nth-child(3)");
    say({ event: "picked", newest, older: await pickedState() });
    await page.click(".releases button:nth-child(1)");

    say({ event: "ready" });
    const line = await nextLine();
    const [, cluster, state] = line.trim().split(/\s+/);
    const start = Date.now();
    await page.waitForSelector(`[data-cluster="${cluster}"][data-state="${state}"]`, { timeout: 1000 });
    say({ event: "seen", ms: Date.now() - start });

    await page.screenshot({ path: path.join(outDir, "fleet.png"), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(200);
    const phone = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      width: window.innerWidth,
    }));
    await page.screenshot({ path: path.join(outDir, "fleet-phone.png"), fullPage: false });
    say({ event: "done", phone, consoleErrors, external });
  } finally {
    await browser.close();
  }
}

main().then(
  () => { lines.close(); process.exit(0); },
  (e) => { say({ event: "error", message: String(e && e.stack || e) }); process.exit(1); },
);
