// Drives the fleet web view of a big generated fleet in headless Chromium, for
// tests/web_view.rs.
//
//   node tests/ui/bigfleet.js check   ASSETS FIXTURES SCREENSHOT_DIR
//   node tests/ui/bigfleet.js measure ASSETS FIXTURES RUNS
//
// ASSETS is src/ui/assets (the page, served as rollwave serves it); FIXTURES holds
// v1/ and v2/, each with fleet.json and apps/<app>.json: the API's answers before and
// after a live update, which a Rust test wrote from the view model. This script serves
// them over HTTP with the event stream, the second version on demand, so the page runs
// exactly as against `rollwave ui`.
//
// check: prints one JSON line of what the page shows (compact waves and their counts,
// a wave expanded, the filters and their counts, the hash, what a live update replaced,
// the filters after another update).
// measure: prints one JSON line with the time to first render and to apply the live
// update, per run. Measures, never judges: the figures go into docs/performance.md.
//
// NODE_PATH must hold playwright-core (tests/ui/setup prints the directory); CHROMIUM
// names the browser (default /usr/bin/chromium). Any failure prints {"error": ...} and
// exits 1.
"use strict";

const { chromium } = require("playwright-core");
const fs = require("fs");
const http = require("http");
const path = require("path");

const [mode, assets, fixtures, arg] = process.argv.slice(2);

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

// The API of one version at a time, with the event stream telling pages of a change.
function serve() {
  let version = 1;
  const streams = new Set();
  const file = (res, p, type, extra) => {
    fs.readFile(p, (err, body) => {
      if (err) { res.writeHead(404, { "content-type": "application/json" }); res.end('{"error":"not found"}'); return; }
      res.writeHead(200, { "content-type": type, "cache-control": "no-store", ...extra });
      res.end(body);
    });
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const p = url.pathname;
    const page = { "content-security-policy": CSP };
    if (p === "/") return file(res, path.join(assets, "index.html"), "text/html; charset=utf-8", page);
    if (p === "/ui.js") return file(res, path.join(assets, "ui.js"), "text/javascript; charset=utf-8", page);
    if (p === "/ui.css") return file(res, path.join(assets, "ui.css"), "text/css; charset=utf-8", page);
    if (p === "/favicon.svg") return file(res, path.join(assets, "favicon.svg"), "image/svg+xml", page);
    const dir = path.join(fixtures, "v" + version);
    if (p === "/api/fleet") return file(res, path.join(dir, "fleet.json"), "application/json");
    if (p.startsWith("/api/apps/")) {
      const name = decodeURIComponent(p.slice("/api/apps/".length));
      if (!/^[\w.-]+$/.test(name)) { res.writeHead(404); res.end(); return; }
      return file(res, path.join(dir, "apps", name + ".json"), "application/json");
    }
    if (p === "/api/events") {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write(`event: change\ndata: {"version":${version}}\n\n`);
      streams.add(res);
      req.on("close", () => streams.delete(res));
      return;
    }
    res.writeHead(404);
    res.end();
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({
    url: `http://127.0.0.1:${server.address().port}/`,
    // Publishes version `v`; returns when the event went out (Date.now()).
    publish(v) {
      version = v;
      for (const s of streams) s.write(`event: change\ndata: {"version":${v}}\n\n`);
      return Date.now();
    },
    close() { for (const s of streams) s.end(); server.close(); },
  })));
}

// Records, in the page, when the page first showed each version (performance.now(),
// and Date.now() for comparing with the server's clock).
function recordRenders() {
  window.__renders = {};
  new MutationObserver(() => {
    const v = document.body && document.body.dataset.version;
    if (v && !window.__renders[v]) {
      window.__renders[v] = { dom: performance.now(), wall: Date.now() };
      requestAnimationFrame(() => requestAnimationFrame(() => { window.__renders[v].painted = performance.now(); }));
    }
  }).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-version"] });
}

async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // Root in a container has no user namespaces for Chromium's sandbox.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

// What the waves show now.
function waves(page) {
  return page.evaluate(() => [...document.querySelectorAll("[data-wave]")].map((w) => ({
    index: Number(w.dataset.wave),
    compact: w.dataset.compact === "true",
    label: w.querySelector(".wave-label small").innerText,
    counts: w.querySelector(".summary").hidden ? null : w.querySelector(".phase-counts").innerText,
    squares: [...w.querySelectorAll("[data-square]")].map((s) => s.dataset.square),
    cards: [...w.querySelectorAll(".cell[data-cluster]")].map((c) => c.dataset.cluster),
  })));
}

const filterStatus = (page) => page.evaluate(() => document.getElementById("filter-status").innerText);

async function check(shots) {
  const srv = await serve();
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const consoleErrors = [];
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    const out = {};
    await page.goto(srv.url + "#app=app-00", { waitUntil: "load" });
    await page.waitForSelector("body[data-version='1'] [data-wave]", { timeout: 30000 });
    await page.waitForSelector("#live[data-live=live]", { timeout: 30000 });
    out.loaded = await waves(page);

    // Expand the first compact wave from the keyboard, then filter.
    await page.focus("[data-wave='2'] .toggle");
    await page.keyboard.press("Enter");
    out.expanded = (await waves(page))[2];
    await page.fill("#filter-label", "region=bj");
    out.label = { waves: await waves(page), status: await filterStatus(page), hash: await page.evaluate(() => location.hash) };
    await page.click("#filter-phases [data-state='Healthy']");
    out.labelHealthy = { waves: await waves(page), status: await filterStatus(page), hash: await page.evaluate(() => location.hash) };
    // A shared link opens with the same filters and the same wave expanded.
    const shared = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await shared.goto(srv.url + out.labelHealthy.hash, { waitUntil: "load" });
    await shared.waitForSelector("body[data-version='1'] [data-wave]", { timeout: 30000 });
    out.shared = {
      waves: await waves(shared),
      status: await filterStatus(shared),
      inputs: await shared.evaluate(() => ({
        label: document.getElementById("filter-label").value,
        phases: [...document.querySelectorAll("#filter-phases [aria-pressed=true]")].map((b) => b.dataset.state),
      })),
    };
    await shared.close();
    await page.click("#filter-clear");
    await page.fill("#filter-name", "-00");
    out.name = { waves: await waves(page), status: await filterStatus(page) };
    await page.click("#filter-clear");
    out.cleared = { status: await filterStatus(page), hash: await page.evaluate(() => location.hash) };

    // The live update: mark every cell and square node, watch what is added.
    await page.evaluate(() => {
      for (const n of document.querySelectorAll("[data-cluster], [data-square], [data-wave]")) n.__before = true;
      window.__added = [];
      new MutationObserver((records) => {
        for (const r of records) {
          for (const n of r.addedNodes) {
            if (n.nodeType === 1 && (n.dataset.cluster || n.dataset.square)) window.__added.push(n.dataset.cluster || n.dataset.square);
          }
        }
      }).observe(document.getElementById("app"), { childList: true, subtree: true });
    });
    srv.publish(2);
    await page.waitForSelector("body[data-version='2']", { timeout: 30000 });
    out.update = await page.evaluate(() => {
      const nodes = [...document.querySelectorAll("#app [data-cluster], #app [data-square]")];
      return {
        added: window.__added,
        kept: nodes.filter((n) => n.__before).length,
        fresh: nodes.filter((n) => !n.__before).map((n) => ({ cluster: n.dataset.cluster || n.dataset.square, state: n.dataset.state })),
        wavesKept: [...document.querySelectorAll("[data-wave]")].every((w) => w.__before),
      };
    });
    out.afterUpdate = await waves(page);
    // Filters stay as the views change under them.
    await page.fill("#filter-label", "region=sh");
    srv.publish(1);
    await page.waitForSelector("body[data-version='1']", { timeout: 30000 });
    out.filteredUpdate = {
      waves: await waves(page),
      status: await filterStatus(page),
      label: await page.evaluate(() => document.getElementById("filter-label").value),
      hash: await page.evaluate(() => location.hash),
    };
    await page.click("#filter-clear");
    await page.screenshot({ path: path.join(shots, "bigfleet.png"), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(200);
    out.phone = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth }));
    await page.screenshot({ path: path.join(shots, "bigfleet-phone.png"), fullPage: false });
    out.consoleErrors = consoleErrors;
    process.stdout.write(JSON.stringify(out) + "\n");
  } finally {
    await browser.close();
    srv.close();
  }
}

async function measure(runs) {
  const browser = await launch();
  const results = [];
  try {
    for (let i = 0; i < runs; i++) {
      const srv = await serve();
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      await page.addInitScript(recordRenders);
      await page.goto(srv.url + "#app=app-00", { waitUntil: "load" });
      await page.waitForFunction(() => window.__renders["1"] && window.__renders["1"].painted, null, { timeout: 30000 });
      await page.waitForSelector("#live[data-live=live]", { timeout: 30000 });
      const sent = srv.publish(2);
      await page.waitForFunction(() => window.__renders["2"] && window.__renders["2"].painted, null, { timeout: 30000 });
      const r = await page.evaluate(() => ({
        renders: window.__renders,
        nodes: document.getElementsByTagName("*").length,
        fetched: performance.getEntriesByType("resource").filter((e) => e.name.includes("/api/")).map((e) => ({ url: e.name.replace(/^.*\/api/, "/api"), bytes: e.encodedBodySize, ms: Math.round(e.duration) })),
      }));
      results.push({
        firstRenderMs: Math.round(r.renders["1"].dom),
        firstPaintMs: Math.round(r.renders["1"].painted),
        updateMs: r.renders["2"].wall - sent,
        updatePaintMs: Math.round(r.renders["2"].wall - sent + r.renders["2"].painted - r.renders["2"].dom),
        nodes: r.nodes,
        fetched: i === 0 ? r.fetched : undefined,
      });
      await context.close();
      srv.close();
    }
  } finally {
    await browser.close();
  }
  const median = (k) => results.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(results.length / 2)];
  process.stdout.write(JSON.stringify({
    runs: results,
    median: { firstRenderMs: median("firstRenderMs"), firstPaintMs: median("firstPaintMs"), updateMs: median("updateMs"), updatePaintMs: median("updatePaintMs") },
  }) + "\n");
}

(mode === "check" ? check(arg) : measure(Number(arg) || 5)).then(
  () => process.exit(0),
  (e) => { process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + "\n"); process.exit(1); },
);
