// The fleet web view: reads /api/fleet and /api/apps/<app>, and again whenever
// /api/events says the views changed. Read-only; text is always set as text.
"use strict";

const view = {
  fleet: null,
  app: null,
  appName: null,
  release: null, // null: what each cluster runs now; else a release sha
  skew: 0, // server clock minus this browser's, in ms
  seq: 0,
  reading: 0, // reads of the views under way
  announced: null, // the version the event stream last announced
  filter: { name: "", label: "", phases: new Set() },
  open: new Set(), // compact waves shown as cards: "app/wave"
};

const STATES = ["Healthy", "Progressing", "Suspended", "Inconclusive", "RolledBack",
  "Degraded", "Error", "Unknown", "NotDeployed"];
const STATE_WORDS = { NotDeployed: "not deployed", RolledBack: "rolled back" };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  view.appName = p.get("app");
  view.release = p.get("release");
  view.filter = {
    name: p.get("cluster") || "",
    label: p.get("label") || "",
    phases: new Set((p.get("phase") || "").split(",").filter((s) => STATES.includes(s))),
  };
  const open = (p.get("open") || "").split(",").filter((w) => /^\d+$/.test(w));
  view.open = new Set(view.appName ? open.map((w) => view.appName + "/" + w) : []);
  showFilters();
}

function writeHash() {
  const p = new URLSearchParams();
  if (view.appName) p.set("app", view.appName);
  if (view.release) p.set("release", view.release);
  if (view.filter.name) p.set("cluster", view.filter.name);
  if (view.filter.label) p.set("label", view.filter.label);
  if (view.filter.phases.size) p.set("phase", STATES.filter((s) => view.filter.phases.has(s)).join(","));
  const prefix = view.appName + "/";
  const open = [...view.open].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  if (open.length) p.set("open", open.join(","));
  const hash = "#" + p.toString();
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// Reads the views and shows them. Only the newest of overlapping reads is shown; a
// change announced while a read was under way is read once that read is done, so the
// page reads the views once when it opens, not once more for the stream's first event.
async function refresh() {
  const seq = ++view.seq;
  view.reading++;
  let shown = false;
  try {
    const fleet = await getJson("/api/fleet");
    const names = fleet.apps.map((a) => a.name);
    let name = view.appName;
    if (!names.includes(name)) name = names[0] || null;
    const app = name ? await getJson("/api/apps/" + encodeURIComponent(name)) : null;
    if (seq !== view.seq) return; // a newer refresh is under way
    view.fleet = fleet;
    view.app = app;
    view.appName = name;
    view.skew = Date.parse(fleet.at) - Date.now();
    if (view.release && app && !app.releases.some((r) => r.sha === view.release)) view.release = null;
    render();
    document.body.dataset.version = String(fleet.version);
    shown = true;
  } catch (e) {
    showError("cannot read the fleet: " + e.message);
  } finally {
    view.reading--;
  }
  if (shown && !view.reading && view.announced !== null && view.announced !== view.fleet.version) refresh();
}

function showError(text) {
  const b = document.getElementById("error");
  b.textContent = text || "";
  b.hidden = !text;
}

// The freeze banner: the line is stopped for everyone in its scope until a reviewed
// commit lifts it (or its end passes); reverts still go through.
function showFreeze(freeze) {
  const b = document.getElementById("freeze");
  b.hidden = !freeze;
  if (!freeze) { b.textContent = ""; return; }
  b.textContent = "Frozen: " + freeze.reason + " (" + freeze.scope + ")" +
    (freeze.until ? " until " + freeze.until : "") +
    ". No new wave opens; reverts go through. `rollwave unfreeze` lifts it.";
}

function render() {
  const f = view.fleet;
  document.getElementById("head").textContent = f.head.short + " " + f.head.subject;
  const problems = [];
  if (f.error) problems.push("The repository could not be re-read (showing the last state read): " + f.error);
  for (const u of f.unreadable) problems.push("Unreadable status: " + u);
  showError(problems.join("\n"));
  showFreeze(f.freeze);
  renderApps(f);
  renderApp(view.app);
  writeHash();
}

function stateBar(states, total) {
  const bar = el("span", { class: "counts", "aria-hidden": "true" });
  for (const s of STATES) {
    const n = states[s] || 0;
    if (!n) continue;
    const i = el("i", { "data-state": s });
    i.style.flex = String(n / Math.max(total, 1));
    bar.append(i);
  }
  return bar;
}

const appButtons = new Map();

function renderApps(f) {
  reconcile(document.getElementById("apps"), appButtons, f.apps, (a) => a.name,
    (a) => JSON.stringify(a) + (a.name === view.appName), (a) => {
      const summary = Object.entries(a.states).map(([s, n]) => n + " " + (STATE_WORDS[s] || s)).join(", ");
      return el("button", {
        type: "button",
        "data-app": a.name,
        "aria-current": a.name === view.appName ? "true" : "false",
        title: summary,
        on: { click: () => { view.appName = a.name; view.release = null; writeHash(); refresh(); } },
      },
      el("span", { class: "name", text: a.name }),
      el("span", { class: "line", text: " " + a.clusters + " clusters, " + a.waves + " waves" }),
      stateBar(a.states, a.clusters),
      a.blocked ? el("div", { class: "blocked gate", "data-halted": String(a.blocked.halted), text: "wave " + a.blocked.wave + ": " + a.blocked.reason }) : null);
    });
}

function durationText(s) {
  if (s >= 3600) return Math.floor(s / 3600) + "h" + (s % 3600 >= 60 ? Math.floor(s % 3600 / 60) + "m" : "");
  if (s >= 60) return Math.floor(s / 60) + "m" + (s % 60 ? (s % 60) + "s" : "");
  return s + "s";
}

function bakeNode(b) {
  const fill = el("span");
  const text = el("span", { class: "line bake-text" });
  const analysis = view.app && view.app.policy.metrics.length > 0;
  const wrap = el("div", { class: "bake", "data-since": b.since, "data-until": b.until, "data-seconds": b.seconds, "data-verified": String(b.verified), "data-analysis": String(analysis) },
    el("div", { class: "bar", role: "progressbar", "aria-label": "bake" }, fill), text);
  updateBake(wrap);
  return wrap;
}

function updateBake(node) {
  const since = Date.parse(node.dataset.since);
  const until = Date.parse(node.dataset.until);
  const total = Number(node.dataset.seconds);
  const now = Date.now() + view.skew;
  const done = now >= until;
  const elapsed = Math.min(Math.max(0, Math.floor((now - since) / 1000)), total);
  const fill = node.querySelector(".bar > span");
  fill.style.width = (total > 0 ? Math.min(100, 100 * elapsed / total) : 100) + "%";
  node.querySelector(".bar").setAttribute("aria-valuenow", String(elapsed));
  const analysis = node.dataset.analysis !== "true" ? ""
    : node.dataset.verified === "true" ? ", analysis passed" : ", analysis running";
  node.querySelector(".bake-text").textContent = (done
    ? "baked " + durationText(total)
    : "baking " + durationText(elapsed) + " of " + durationText(total)) + analysis;
}

function releaseText(r) {
  return r ? r.short + " " + r.subject : "-";
}

function cellNode(c, reach) {
  const state = reach && !reach.current ? reach.phase : c.state;
  const dim = view.release !== null && !reach;
  const children = [
    el("div", { class: "name" }, el("span", { text: c.cluster }),
      el("span", { class: "phase", text: STATE_WORDS[c.state] || c.state })),
    el("div", { class: "rel", title: c.release ? c.release.sha : "", text: releaseText(c.release) }),
  ];
  if (reach && !reach.current) children.push(el("div", { class: "line", text: "ran the selected release: " + (STATE_WORDS[reach.phase] || reach.phase) }));
  if (c.since) children.push(el("div", { class: "line", text: "since " + c.since.replace("T", " ").replace("Z", " UTC") }));
  if (c.bake) children.push(bakeNode(c.bake));
  if (c.metrics.length) {
    children.push(el("div", { class: "metrics" }, c.metrics.map((m) =>
      el("span", { class: m.failures > 0 || m.errors > 0 ? "bad" : null, title: m.measurements + " measurements, " + m.failures + " failures, " + m.errors + " errors in a row", text: m.name + " " + m.value }))));
  }
  if (c.analysis && c.analysis.startsWith("analysis")) children.push(el("div", { class: "msg analysis", text: c.analysis }));
  if (c.message && c.message !== c.analysis) children.push(el("div", { class: "msg", text: c.message }));
  if (c.next) children.push(el("div", { class: "line", text: "next: " + c.next.short + " (" + c.reason + ")" }));
  if (c.state === "Unknown") children.push(el("div", { class: "line", text: c.heartbeat ? "last heartbeat " + c.heartbeat : "no status reported" }));
  return el("div", { class: "cell" + (dim ? " dim" : ""), "data-cluster": c.cluster, "data-state": state, "data-release": c.release ? c.release.sha : "" }, children);
}

// One small square of a compact wave: the colour of the cluster's phase, its name and
// release in the tooltip.
function squareNode(c, reach) {
  const state = reach && !reach.current ? reach.phase : c.state;
  const dim = view.release !== null && !reach;
  return el("i", { class: dim ? "dim" : null, "data-square": c.cluster, "data-state": state,
    title: c.cluster + ": " + (STATE_WORDS[state] || state) + (c.release ? ", " + releaseText(c.release) : "") });
}

// Sets a node's text only when it differs, so an unchanged label is left alone.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// Puts the nodes for `items` into `parent`, in order. A node is made again only when
// its item's signature changed since the last call (`cache` holds key -> {node, sig});
// every other node stays the same DOM node, so a live update of a thousand clusters
// touches only those whose state changed.
function reconcile(parent, cache, items, keyOf, sigOf, make) {
  const seen = new Map();
  const nodes = items.map((it) => {
    const key = keyOf(it);
    const sig = sigOf(it);
    const old = cache.get(key);
    if (old && old.sig === sig) {
      seen.set(key, old);
      return old.node;
    }
    const node = make(it);
    // In its old place, so that the nodes after it need not move.
    if (old && old.node.parentNode === parent) old.node.replaceWith(node);
    seen.set(key, { node, sig });
    return node;
  });
  for (const [key, old] of cache) {
    if (!seen.has(key) && old.node.parentNode === parent) old.node.remove();
  }
  const present = parent.childNodes;
  for (let i = 0; i < nodes.length; i++) {
    if (present[i] !== nodes[i]) parent.insertBefore(nodes[i], present[i] || null);
  }
  while (present.length > nodes.length) parent.lastChild.remove();
  cache.clear();
  for (const [k, v] of seen) cache.set(k, v);
}

// What a card shows, to tell whether it changed: everything but the heartbeat, which
// moves every minute and shows only while the cluster is Unknown.
function cardSig(c, reach, analysis) {
  const { heartbeat, ...shown } = c;
  return JSON.stringify(shown) + JSON.stringify(reach) + analysis + (c.state === "Unknown" ? heartbeat : "");
}

// A release card with more clusters than this draws them as smaller dots, so that a
// thousand fit in a card a few lines high.
const DENSE_OVER = 100;

// The dots of a release card, one per cluster in wave order, coloured by the phase
// the cluster had with the release (faded: it ran it before; grey: never). Drawn on a
// canvas: as elements, ten releases of a thousand clusters were 10,000 of the page's
// 11,400 nodes, and most of its first render.
function reachDots(r, clusters) {
  const dense = clusters.length > DENSE_OVER;
  const size = dense ? 4 : 8;
  const step = size + (dense ? 1 : 2);
  const cols = dense ? 40 : 20;
  const rows = Math.max(1, Math.ceil(clusters.length / cols));
  const ratio = window.devicePixelRatio || 1;
  const canvas = el("canvas", { class: "reach", "aria-hidden": "true", "data-clusters": clusters.length });
  canvas.width = Math.ceil(Math.min(cols, clusters.length) * step * ratio);
  canvas.height = Math.ceil(rows * step * ratio);
  canvas.style.width = canvas.width / ratio + "px";
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const colours = stateColours();
  clusters.forEach((c, i) => {
    const at = r.clusters[c];
    ctx.globalAlpha = at && !at.current ? 0.45 : 1;
    ctx.fillStyle = colours[at ? at.phase : "NotDeployed"] || colours.NotDeployed;
    ctx.fillRect((i % cols) * step, Math.floor(i / cols) * step, size, size);
  });
  return canvas;
}

// The colour of each state, from the style sheet (light or dark).
function stateColours() {
  const style = getComputedStyle(document.documentElement);
  const out = {};
  for (const s of STATES) out[s] = style.getPropertyValue("--" + s.toLowerCase()).trim();
  return out;
}

// A wave with more clusters than this (after the filters) shows as a grid of small
// squares with counts per phase, its cards one click away: 12 cards are two or three
// rows at the usual widths, a screenful; past that a big wave would push the others
// off the page (200 clusters were 27 rows of cards).
const COMPACT_OVER = 12;

// The filters, from the URL's hash: cluster name (substring), labels (`key=value`,
// separated by commas or spaces, all must hold) and phases (any of them).
function parseLabels(text) {
  return text.split(/[\s,]+/).filter(Boolean).map((t) => {
    const i = t.indexOf("=");
    return i < 0 ? { key: t, value: null } : { key: t.slice(0, i), value: t.slice(i + 1) };
  });
}

function filterActive() {
  const f = view.filter;
  return f.name !== "" || f.label !== "" || f.phases.size > 0;
}

// Whether cluster cell `c` (with the state it shows) passes the filters.
function matches(c, state) {
  const f = view.filter;
  if (f.name && !c.cluster.toLowerCase().includes(f.name.toLowerCase())) return false;
  if (f.phases.size && !f.phases.has(state)) return false;
  if (f.label) {
    const labels = (view.fleet && view.fleet.labels && view.fleet.labels[c.cluster]) || {};
    for (const want of parseLabels(f.label)) {
      if (!(want.key in labels)) return false;
      if (want.value !== null && labels[want.key] !== want.value) return false;
    }
  }
  return true;
}

function countsText(counts) {
  return STATES.filter((s) => counts[s]).map((s) => counts[s] + " " + (STATE_WORDS[s] || s)).join(" · ");
}

// What is on the page for the current app, kept between live updates so that only
// what changed is redrawn. Rebuilt when the app or the selected release changes.
let dom = null;

function appSkeleton(app) {
  const d = {
    app: app.name,
    release: view.release,
    title: el("h2"),
    policy: el("p", { class: "policy" }),
    picker: el("div", { class: "releases", role: "group", "aria-label": "releases" }),
    pickerCache: new Map(),
    wavesTitle: el("h3"),
    waves: el("div", { class: "waves" }),
    waveBoxes: new Map(),
  };
  document.getElementById("app").replaceChildren(d.title, d.policy, el("h3", { text: "Releases" }), d.picker, d.wavesTitle, d.waves,
    el("div", { class: "legend" }, STATES.map((s) => el("span", { "data-state": s, text: STATE_WORDS[s] || s }))));
  return d;
}

function waveBox(index) {
  const b = {
    label: el("span"),
    small: el("small"),
    gate: el("div", { class: "gate" }), // in the page only while the wave waits
    summary: el("div", { class: "summary", hidden: true }),
    counts: el("span", { class: "phase-counts" }),
    toggle: el("button", { type: "button", class: "toggle", "data-toggle": index, "aria-expanded": "false" }),
    squares: el("div", { class: "squares", role: "img", hidden: true }),
    squareCache: new Map(),
    cells: el("div", { class: "cells" }),
    cellCache: new Map(),
  };
  b.toggle.addEventListener("click", () => {
    const key = view.appName + "/" + index;
    if (view.open.has(key)) view.open.delete(key); else view.open.add(key);
    writeHash();
    renderWaves();
  });
  b.summary.append(b.counts, b.toggle);
  b.body = el("div", { class: "wave-body" }, b.summary, b.squares, b.cells);
  b.section = el("section", { class: "wave", "data-wave": index },
    el("div", { class: "wave-label" }, b.label, b.small), b.body);
  return b;
}

function renderApp(app) {
  const main = document.getElementById("app");
  if (!app) {
    dom = null;
    main.replaceChildren(el("p", { class: "empty", text: "The fleet has no apps." }));
    return;
  }
  if (!dom || dom.app !== app.name || dom.release !== view.release) dom = appSkeleton(app);
  const p = app.policy;
  setText(dom.title, app.name);
  setText(dom.policy, "batches " + p.batches + " · bake " + p.bake + " · gate " + p.gate + " · onFailure " + p.onFailure + (p.metrics.length ? " · analysis " + p.metrics.join(", ") : ""));
  const selected = view.release ? app.releases.find((r) => r.sha === view.release) : null;
  const clusters = app.waves.flatMap((w) => w.clusters.map((c) => c.cluster));
  const order = clusters.join(" ");
  const items = [null, ...app.releases];
  reconcile(dom.picker, dom.pickerCache, items, (r) => (r ? r.sha : ""),
    (r) => (r ? JSON.stringify(r) + order : "now") + "|" + String(selected === r || (!selected && !r)),
    (r) => {
      if (!r) {
        return el("button", { type: "button", "aria-pressed": String(!selected), "data-release": "", on: { click: () => pick(null) } },
          el("span", { class: "subject", text: "Now" }),
          el("span", { class: "where", text: "what each cluster runs" }));
      }
      const reach = reachDots(r, clusters);
      const where = r.furthestWave === null ? "not applied anywhere yet"
        : "on " + r.running + " of " + clusters.length + ", reached wave " + r.furthestWave;
      return el("button", { type: "button", "aria-pressed": String(selected === r), "data-release": r.sha, title: r.sha + " " + r.time, on: { click: () => pick(r.sha) } },
        el("span", { class: "subject" }, el("span", { class: "sha", text: r.short }), " " + r.subject),
        el("span", { class: "where", text: where }), reach);
    });
  setText(dom.wavesTitle, selected ? "Where " + selected.short + " reached" : "Waves");
  renderWaves();
}

// The waves of the current app under the filters: gates, compact grids or cards, and
// how many clusters the filters hide.
function renderWaves() {
  const app = view.app;
  if (!app || !dom) return;
  const selected = view.release ? app.releases.find((r) => r.sha === view.release) : null;
  const analysis = String(app.policy.metrics.length > 0);
  let previous = null; // the gate shown for the wave before, to name it once
  let hidden = 0;
  let total = 0;
  const boxes = app.waves.map((w) => {
    let b = dom.waveBoxes.get(w.index);
    if (!b) { b = waveBox(w.index); dom.waveBoxes.set(w.index, b); }
    let gate = null;
    if (selected && selected.gates) {
      const g = selected.gates[w.index];
      if (g && g !== "open") gate = { reason: g, halted: g.startsWith("blocked") };
    } else if (!selected && w.gate) {
      gate = { reason: w.gate.reason + " (release " + w.gate.release.short + ")", halted: w.gate.halted };
    }
    if (gate) {
      const text = (gate.halted ? "halted: " : "waiting: ") +
        (previous && previous.reason === gate.reason ? "as wave " + previous.wave : gate.reason);
      if (!previous || previous.reason !== gate.reason) previous = { reason: gate.reason, wave: w.index };
      setText(b.gate, text);
      b.gate.dataset.halted = String(gate.halted);
      b.gate.title = gate.reason;
      if (!b.gate.isConnected) b.body.prepend(b.gate);
    } else {
      previous = null;
      b.gate.remove();
    }
    const shown = [];
    const counts = {};
    for (const c of w.clusters) {
      const reach = selected ? selected.clusters[c.cluster] || null : null;
      const state = reach && !reach.current ? reach.phase : c.state;
      if (!matches(c, state)) continue;
      shown.push({ c, reach });
      counts[state] = (counts[state] || 0) + 1;
    }
    total += w.clusters.length;
    hidden += w.clusters.length - shown.length;
    setText(b.label, "wave " + w.index);
    const n = w.clusters.length;
    setText(b.small, (n === 1 ? "1 cluster" : n + " clusters") +
      (shown.length < n ? ", " + (n - shown.length) + " hidden" : ""));
    const big = shown.length > COMPACT_OVER;
    const open = !big || view.open.has(view.appName + "/" + w.index);
    b.section.dataset.compact = String(!open);
    b.summary.hidden = !big;
    const summary = countsText(counts);
    setText(b.counts, summary);
    setText(b.toggle, open ? "show squares" : "show " + shown.length + " cards");
    b.toggle.setAttribute("aria-expanded", String(open));
    b.squares.hidden = open;
    b.cells.hidden = !open;
    b.squares.setAttribute("aria-label", summary);
    const key = (x) => x.c.cluster;
    if (open) {
      reconcile(b.cells, b.cellCache, shown, key,
        (x) => cardSig(x.c, x.reach, analysis), (x) => cellNode(x.c, x.reach));
      reconcile(b.squares, b.squareCache, [], key, () => "", () => null);
    } else {
      reconcile(b.squares, b.squareCache, shown, key,
        (x) => (x.reach && !x.reach.current ? x.reach.phase : x.c.state) + "|" + (x.reach ? "1" : "0") + "|" + (x.c.release ? x.c.release.sha : ""),
        (x) => squareNode(x.c, x.reach));
      reconcile(b.cells, b.cellCache, [], key, () => "", () => null);
    }
    return b.section;
  });
  for (const [i] of dom.waveBoxes) if (i >= app.waves.length) dom.waveBoxes.delete(i);
  reconcile(dom.waves, new Map(), boxes, (s) => s, () => "", (s) => s);
  const status = document.getElementById("filter-status");
  setText(status, filterActive()
    ? (hidden === 0 ? "all " + total + " clusters match" : hidden + " of " + total + " clusters hidden by the filters")
    : "");
}

function pick(sha) {
  view.release = sha;
  writeHash();
  render();
}

// The filter form: every change re-filters the waves and goes into the URL's hash, so
// a filtered view can be shared and survives live updates and reloads.
function setupFilters() {
  const name = document.getElementById("filter-name");
  const label = document.getElementById("filter-label");
  const phases = document.getElementById("filter-phases");
  phases.replaceChildren(...STATES.map((s) => el("button", {
    type: "button", "data-state": s, "aria-pressed": "false",
    on: { click: () => {
      if (view.filter.phases.has(s)) view.filter.phases.delete(s); else view.filter.phases.add(s);
      filtersChanged();
    } },
  }, STATE_WORDS[s] || s)));
  name.addEventListener("input", () => { view.filter.name = name.value.trim(); filtersChanged(); });
  label.addEventListener("input", () => { view.filter.label = label.value.trim(); filtersChanged(); });
  document.getElementById("filter-clear").addEventListener("click", () => {
    view.filter = { name: "", label: "", phases: new Set() };
    filtersChanged();
  });
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
}

// Shows the filters' state in the form (after reading the hash, or a change).
function showFilters() {
  const name = document.getElementById("filter-name");
  const label = document.getElementById("filter-label");
  if (name.value.trim() !== view.filter.name) name.value = view.filter.name;
  if (label.value.trim() !== view.filter.label) label.value = view.filter.label;
  for (const b of document.querySelectorAll("#filter-phases [data-state]")) {
    b.setAttribute("aria-pressed", String(view.filter.phases.has(b.dataset.state)));
  }
}

function filtersChanged() {
  showFilters();
  writeHash();
  renderWaves();
}

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { live.dataset.live = "live"; live.textContent = "live"; });
  events.addEventListener("error", () => { live.dataset.live = "offline"; live.textContent = "reconnecting"; });
  events.addEventListener("change", (e) => {
    const v = JSON.parse(e.data).version;
    view.announced = v;
    if (view.reading) return; // the read under way looks at view.announced when done
    if (!view.fleet || v !== view.fleet.version) refresh();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupFilters();
  readHash();
  window.addEventListener("hashchange", () => { readHash(); refresh(); });
  refresh();
  connect();
  setInterval(() => document.querySelectorAll(".bake").forEach(updateBake), 1000);
});
