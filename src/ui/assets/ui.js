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
}

function writeHash() {
  const p = new URLSearchParams();
  if (view.appName) p.set("app", view.appName);
  if (view.release) p.set("release", view.release);
  history.replaceState(null, "", "#" + p.toString());
}

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function refresh() {
  const seq = ++view.seq;
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
  } catch (e) {
    showError("cannot read the fleet: " + e.message);
  }
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

function renderApps(f) {
  const nav = document.getElementById("apps");
  nav.replaceChildren(...f.apps.map((a) => {
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
  }));
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

function renderApp(app) {
  const main = document.getElementById("app");
  if (!app) {
    main.replaceChildren(el("p", { class: "empty", text: "The fleet has no apps." }));
    return;
  }
  const p = app.policy;
  const selected = view.release ? app.releases.find((r) => r.sha === view.release) : null;
  const picker = el("div", { class: "releases", role: "group", "aria-label": "releases" },
    el("button", { type: "button", "aria-pressed": String(!selected), "data-release": "", on: { click: () => pick(null) } },
      el("span", { class: "subject", text: "Now" }),
      el("span", { class: "where", text: "what each cluster runs" })),
    app.releases.map((r) => {
      const clusters = app.waves.flatMap((w) => w.clusters.map((c) => c.cluster));
      const reach = el("span", { class: "reach", "aria-hidden": "true" }, clusters.map((c) => {
        const at = r.clusters[c];
        return el("i", { "data-state": at ? at.phase : null, class: at && !at.current ? "past" : null });
      }));
      const where = r.furthestWave === null ? "not applied anywhere yet"
        : "on " + r.running + " of " + clusters.length + ", reached wave " + r.furthestWave;
      return el("button", { type: "button", "aria-pressed": String(selected === r), "data-release": r.sha, title: r.sha + " " + r.time, on: { click: () => pick(r.sha) } },
        el("span", { class: "subject" }, el("span", { class: "sha", text: r.short }), " " + r.subject),
        el("span", { class: "where", text: where }), reach);
    }));
  let previous = null; // the gate shown for the wave before, to name it once
  const waves = app.waves.map((w) => {
    let gate = null;
    if (selected && selected.gates) {
      const g = selected.gates[w.index];
      if (g && g !== "open") gate = { reason: g, halted: g.startsWith("blocked") };
    } else if (!selected && w.gate) {
      gate = { reason: w.gate.reason + " (release " + w.gate.release.short + ")", halted: w.gate.halted };
    }
    let gateText = null;
    if (gate) {
      gateText = (gate.halted ? "halted: " : "waiting: ") +
        (previous && previous.reason === gate.reason ? "as wave " + previous.wave : gate.reason);
      if (!previous || previous.reason !== gate.reason) previous = { reason: gate.reason, wave: w.index };
    } else {
      previous = null;
    }
    return el("section", { class: "wave", "data-wave": w.index },
      el("div", { class: "wave-label", text: "wave " + w.index },
        el("small", { text: w.clusters.length + (w.clusters.length === 1 ? " cluster" : " clusters") })),
      gate ? el("div", { class: "gate", "data-halted": String(gate.halted), title: gate.reason, text: gateText }) : null,
      el("div", { class: "cells" }, w.clusters.map((c) => cellNode(c, selected ? selected.clusters[c.cluster] : null))));
  });
  main.replaceChildren(
    el("h2", { text: app.name }),
    el("p", { class: "policy", text: "batches " + p.batches + " · bake " + p.bake + " · gate " + p.gate + " · onFailure " + p.onFailure + (p.metrics.length ? " · analysis " + p.metrics.join(", ") : "") }),
    el("h3", { text: "Releases" }),
    picker,
    el("h3", { text: selected ? "Where " + selected.short + " reached" : "Waves" }),
    ...waves,
    el("div", { class: "legend" }, STATES.map((s) => el("span", { "data-state": s, text: STATE_WORDS[s] || s }))));
}

function pick(sha) {
  view.release = sha;
  writeHash();
  render();
}

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { live.dataset.live = "live"; live.textContent = "live"; });
  events.addEventListener("error", () => { live.dataset.live = "offline"; live.textContent = "reconnecting"; });
  events.addEventListener("change", (e) => {
    const v = JSON.parse(e.data).version;
    if (!view.fleet || v !== view.fleet.version) refresh();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  readHash();
  window.addEventListener("hashchange", () => { readHash(); refresh(); });
  refresh();
  connect();
  setInterval(() => document.querySelectorAll(".bake").forEach(updateBake), 1000);
});
