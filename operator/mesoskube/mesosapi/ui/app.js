// The master's web UI: agents, frameworks, tasks, roles, polled from the Mesos read endpoints.
import { html, render, useEffect, useState } from "./preact-htm.js";

const POLL_MS = 2000;
const HISTORY = 150; // samples of dominant shares kept for the chart (5 min at 2 s)
const TABS = ["agents", "frameworks", "tasks", "roles"];
const history = []; // [{t, shares: {role: share}}]

async function get(path) {
  const headers = {};
  const token = localStorage.getItem("mesoskube-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(path, { headers });
  if (r.status === 401 || r.status === 403) throw new Error(`${r.status}: ${await r.text()}`);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

const n = (x, d = 1) => (x === undefined || x === null ? "" : Number(x).toFixed(d).replace(/\.0+$/, ""));
const pct = (x) => (x === undefined || x === null ? "" : `${(100 * x).toFixed(1)} %`);
const age = (ts) => {
  if (!ts) return "";
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 120 ? `${s.toFixed(0)} s` : s < 7200 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`;
};

function Agents({ state }) {
  return html`<table id="agents">
    <tr><th>agent</th><th>attributes</th><th class="num">cpus used / offered / total</th>
      <th class="num">mem MB used / offered / total</th><th class="num">gpus</th><th>active</th><th>kind</th></tr>
    ${state.slaves.map((a) => html`<tr class="agent">
      <td>${a.hostname}</td>
      <td>${Object.entries(a.attributes).map(([k, v]) => html`<span class="tag">${k}=${v}</span>`)}</td>
      <td class="num">${n(a.used_resources.cpus)} / ${n(a.offered_resources.cpus)} / ${n(a.resources.cpus)}</td>
      <td class="num">${n(a.used_resources.mem, 0)} / ${n(a.offered_resources.mem, 0)} / ${n(a.resources.mem, 0)}</td>
      <td class="num">${n(a.resources.gpus, 0)}</td>
      <td>${a.active ? "yes" : "no"}</td>
      <td>${a.attributes.type === "kwok" ? "emulated (kwok)" : "real"}</td></tr>`)}
  </table>`;
}

function Frameworks({ state }) {
  return html`<table id="frameworks">
    <tr><th>id</th><th>name</th><th>roles</th><th>connected</th><th class="num">dominant share</th>
      <th class="num">offers</th><th class="num">tasks</th><th class="num">cpus</th><th class="num">mem MB</th></tr>
    ${state.frameworks.map((f) => html`<tr class="framework">
      <td>${f.id}</td><td>${f.name}</td><td>${f.roles.join(", ")}</td><td>${f.connected ? "yes" : "no"}</td>
      <td class="num">${pct(f.dominant_share)}</td><td class="num">${f.offers.length}</td>
      <td class="num">${f.tasks.length}</td><td class="num">${n(f.used_resources.cpus)}</td>
      <td class="num">${n(f.used_resources.mem, 0)}</td></tr>`)}
  </table>`;
}

function Tasks({ state }) {
  const [st, setSt] = useState("");
  const [fw, setFw] = useState("");
  const [q, setQ] = useState("");
  const all = state.frameworks.flatMap((f) => [...f.tasks, ...f.completed_tasks]);
  const states = [...new Set(all.map((t) => t.state))].sort();
  const shown = all.filter((t) => (!st || t.state === st) && (!fw || t.framework_id === fw) && (!q || t.id.includes(q)));
  return html`<div class="filters">
      <label>state <select id="filter-state" value=${st} onChange=${(e) => setSt(e.target.value)}>
        <option value="">all</option>${states.map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
      <label>framework <select id="filter-framework" value=${fw} onChange=${(e) => setFw(e.target.value)}>
        <option value="">all</option>${state.frameworks.map((f) => html`<option value=${f.id}>${f.id}</option>`)}
      </select></label>
      <label>task id <input id="filter-id" value=${q} onInput=${(e) => setQ(e.target.value)} /></label>
      <span>${shown.length} of ${all.length}</span>
    </div>
    <table id="tasks">
      <tr><th>task</th><th>framework</th><th>state</th><th>agent</th><th class="num">cpus</th>
        <th class="num">mem MB</th><th class="num">age</th></tr>
      ${shown.map((t) => html`<tr class="task">
        <td>${t.id}</td><td>${t.framework_id}</td><td class=${`state-${t.state}`}>${t.state}</td><td>${t.slave_id}</td>
        <td class="num">${n(t.resources.cpus)}</td><td class="num">${n(t.resources.mem, 0)}</td>
        <td class="num">${age(t.statuses.length ? t.statuses[0].timestamp : 0)}</td></tr>`)}
    </table>`;
}

const COLORS = ["#3b82f6", "#ef4444", "#10b981", "#f59e0b", "#8b5cf6", "#06b6d4"];

function Chart({ roles }) {
  const w = 640, h = 200;
  if (history.length < 2) return html`<p>collecting dominant shares…</p>`;
  const t0 = history[0].t, t1 = history[history.length - 1].t || t0 + 1;
  const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * (w - 40) + 30;
  const y = (s) => h - 20 - s * (h - 40);
  return html`<svg class="chart" id="share-chart" width=${w} height=${h}>
    <line x1="30" y1=${y(0)} x2=${w - 10} y2=${y(0)} stroke="#999" />
    <line x1="30" y1=${y(1)} x2=${w - 10} y2=${y(1)} stroke="#ddd" />
    <text x="2" y=${y(1) + 4} font-size="10">100%</text><text x="8" y=${y(0) + 4} font-size="10">0</text>
    ${roles.map((r, i) => html`<polyline class="share-line" fill="none" stroke=${COLORS[i % COLORS.length]}
      stroke-width="2" points=${history.map((p) => `${x(p.t)},${y(p.shares[r.name] || 0)}`).join(" ")} />
      <text x=${w - 140} y=${16 + 14 * i} font-size="12" fill=${COLORS[i % COLORS.length]}>${r.name}</text>`)}
  </svg>`;
}

function Roles({ roles }) {
  return html`<table id="roles">
      <tr><th>role</th><th class="num">weight</th><th>quota</th><th class="num">frameworks</th>
        <th class="num">cpus</th><th class="num">mem MB</th><th class="num">dominant share</th></tr>
      ${roles.map((r) => html`<tr class="role">
        <td>${r.name}</td><td class="num">${n(r.weight, 2)}</td>
        <td>${Object.entries(r.quota || {}).map(([k, v]) => html`<span class="tag">${k} ≤ ${v}</span>`)}</td>
        <td class="num">${r.frameworks.length}</td><td class="num">${n(r.resources.cpus)}</td>
        <td class="num">${n(r.resources.mem, 0)}</td>
        <td class="num"><span class="bar" style=${`width:${Math.round(100 * (r.dominant_share || 0))}px`}></span>
          ${pct(r.dominant_share || 0)}</td></tr>`)}
    </table>
    <h3>dominant share over time</h3>
    <${Chart} roles=${roles} />`;
}

function Token({ error }) {
  const [v, setV] = useState("");
  return html`<div class="error">${error}
    <p>This master wants a Kubernetes bearer token: <input id="token" value=${v} onInput=${(e) => setV(e.target.value)} />
    <button onClick=${() => { localStorage.setItem("mesoskube-token", v); location.reload(); }}>use</button></p></div>`;
}

function App() {
  const [tab, setTab] = useState((location.hash || "#agents").slice(1));
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let alive = true;
    const poll = async () => {
      try {
        const [state, roles] = await Promise.all([get("state"), get("roles")]);
        history.push({ t: Date.now() / 1000, shares: Object.fromEntries(roles.roles.map((r) => [r.name, r.dominant_share || 0])) });
        if (history.length > HISTORY) history.shift();
        if (alive) { setData({ state, roles: roles.roles }); setError(null); }
      } catch (e) {
        if (alive) setError(String(e.message || e));
      }
      if (alive) setTimeout(poll, POLL_MS);
    };
    poll();
    const onHash = () => setTab((location.hash || "#agents").slice(1));
    window.addEventListener("hashchange", onHash);
    return () => { alive = false; window.removeEventListener("hashchange", onHash); };
  }, []);
  if (error && !data) return error.startsWith("401") || error.startsWith("403") ? html`<${Token} error=${error} />` : html`<div class="error">${error}</div>`;
  if (!data) return html`<p>loading…</p>`;
  const { state, roles } = data;
  const running = state.frameworks.reduce((k, f) => k + f.tasks.filter((t) => t.state === "TASK_RUNNING").length, 0);
  return html`<header><h1>mesoskube master</h1>
      <span class="stat">version <b>${state.version}</b></span>
      <span class="stat">agents <b id="n-agents">${state.slaves.length}</b></span>
      <span class="stat">frameworks <b id="n-frameworks">${state.frameworks.length}</b></span>
      <span class="stat">tasks running <b id="n-running">${running}</b></span>
      ${error ? html`<span class="error">${error}</span>` : ""}</header>
    <nav>${TABS.map((t) => html`<a id=${`tab-${t}`} href=${`#${t}`} class=${t === tab ? "active" : ""}>${t}</a>`)}</nav>
    <main>${tab === "frameworks" ? html`<${Frameworks} state=${state} />`
      : tab === "tasks" ? html`<${Tasks} state=${state} />`
      : tab === "roles" ? html`<${Roles} roles=${roles} />`
      : html`<${Agents} state=${state} />`}</main>`;
}

const root = document.getElementById("app");
root.textContent = ""; // the static "loading…" placeholder; Preact appends to what is there
render(html`<${App} />`, root);
