// The ops dashboard: polls the admin API with the session cookie, draws uPlot charts, and sends the controls'
// POSTs with the page's CSRF token, each after a confirmation. No build step; served by the router itself, so it
// stays up while a cluster fails over.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const COLOURS = ["#2563eb", "#16a34a", "#9333ea", "#ea580c"];
const state = { updates: 0, charts: {}, status: null };
window.canaryDashboard = state;   // read by the browser test (tests/canary/test_dashboard.py)

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function say(text, bad = false) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = bad ? "error" : "muted";
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method, credentials: "same-origin", cache: "no-store",
    headers: method === "GET" ? {} : { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { location.reload(); throw new Error("signed out"); }
  const doc = await response.json();
  if (!response.ok) throw new Error(doc.error || response.statusText);
  return doc;
}

async function act(question, method, path, body) {
  if (!window.confirm(question)) { say("cancelled"); return; }
  try {
    const result = await api(method, path, body);
    if (result.percent !== undefined) renderStatus(result);
    say(`done: ${question.replace(/\?$/, "")}`);
  } catch (e) {
    say(`refused: ${e.message}`, true);
  }
}

// -- status ----------------------------------------------------------------------------------------------
function renderStatus(st) {
  state.status = st;
  document.getElementById("summary").textContent =
    `stable ${st.stable} · canary ${st.canary} · share ${st.percent}% (effective ${st.effective_canary_percent}%)` +
    (st.panic ? " · PANIC" : "");
  document.getElementById("share").textContent =
    `${st.canary} gets ${st.percent}% of new sessions; effective ${st.effective_canary_percent}% after failover and slow start`;
  const shifted = Object.entries(st.shift || {});
  document.getElementById("shift").textContent = shifted.length
    ? "proactive shift: " + shifted.map(([c, p]) => `${p}% of ${c}'s users moved away`).join(", ") : "";
  const clusters = document.getElementById("clusters");
  clusters.replaceChildren(el("h2", {}, "Clusters and nodes"));
  for (const [name, c] of Object.entries(st.clusters)) {
    const table = el("table", { id: `nodes-${name}` }, el("tr", {}, ...["node", "address", "state", "health",
      "in flight", "requests", ""].map((h) => el("th", {}, h))));
    for (const n of c.nodes) {
      const drained = n.state === "drained";
      table.append(el("tr", {}, el("td", {}, n.name), el("td", {}, n.address), el("td", { class: n.state }, n.state),
        el("td", { class: n.health }, n.health), el("td", {}, n.outstanding), el("td", {}, n.requests),
        el("td", {}, el("button", { id: `${drained ? "undrain" : "drain"}-${name}-${n.name}`,
          onclick: () => act(`${drained ? "Undrain" : "Drain"} node ${name}/${n.name}?`, "POST",
            `/api/${drained ? "undrain" : "drain"}`, { target: `${name}/${n.name}` }) }, drained ? "undrain" : "drain"))));
    }
    clusters.append(el("h3", {}, `${name} (${c.role}) `, el("span", { class: c.available ? "available" : "down" },
      c.available ? "available" : "DOWN"), c.drained ? " · drained" : ""),
      el("p", { class: "muted small" }, `slow start ${c.slow_start_factor} · active ${c.active} · queued ${c.queued} `,
      el("button", { id: `${c.drained ? "undrain" : "drain"}-${name}`,
        onclick: () => act(`${c.drained ? "Undrain" : "Drain"} the whole ${name} cluster?`, "POST",
          `/api/${c.drained ? "undrain" : "drain"}`, { target: name }) }, c.drained ? "undrain cluster" : "drain cluster")),
      table);
  }
  renderPlan(st.plan);
}

function renderPlan(p) {
  const line = document.getElementById("plan");
  if (!p) { line.textContent = "no plan"; return; }
  const step = p.phase === "mirror" ? `mirror step (${p.mirror}% copied)` : `step ${p.step}/${p.steps.length}`;
  let text = `${p.id}: ${p.status}, ${step} of ${p.steps.join(",")}`;
  if (p.time_left !== null) text += `, ${p.time_left} s left`;
  if (p.extensions) text += ` (extended ${p.extensions}×)`;
  if (p.status === "paused" && p.paused_reason) text += ` — ${p.paused_reason}`;
  if (p.last_verdict) text += ` · last verdict: ${p.last_verdict.outcome}: ${p.last_verdict.reason}`;
  line.textContent = text;
}

// -- charts ------------------------------------------------------------------------------------------------
function chart(id, series, unit) {
  const target = document.getElementById(id);
  const opts = { width: Math.max(300, target.clientWidth), height: 200, scales: { x: { time: true } },
    series: [{}, ...series.map((label, i) => ({ label, stroke: COLOURS[Math.floor(i / (series.length / 2)) % 4],
      width: 1.5, dash: label.endsWith("p50") ? [4, 3] : label.endsWith("p95") ? [8, 3] : undefined,
      value: (u, v) => (v === null || v === undefined ? "–" : `${v.toFixed(unit === "ms" ? 1 : 2)} ${unit}`) }))],
    axes: [{}, { label: unit }] };
  return new uPlot(opts, [[], ...series.map(() => [])], target);
}

function align(clusters, pick) {
  const times = [...new Set(Object.values(clusters).flatMap((pts) => pts.map((p) => p.t)))].sort((a, b) => a - b);
  const columns = [times];
  for (const pts of Object.values(clusters)) {
    const byT = new Map(pts.map((p) => [p.t, p]));
    for (const f of pick) columns.push(times.map((t) => (byT.has(t) ? f(byT.get(t)) : null)));
  }
  return columns;
}

function renderLive(live) {
  const names = Object.keys(live.clusters);
  if (!state.charts.rate) {
    state.charts.rate = chart("chart-rate", names, "req/s");
    state.charts.errors = chart("chart-errors", names, "%");
    state.charts.latency = chart("chart-latency", names.flatMap((n) => [`${n} p50`, `${n} p95`, `${n} p99`]), "ms");
  }
  state.charts.rate.setData(align(live.clusters, [(p) => p.answers]));
  state.charts.errors.setData(align(live.clusters, [(p) => (p.answers ? (100 * p.failed) / p.answers : 0)]));
  state.charts.latency.setData(align(live.clusters, [(p) => p.p50, (p) => p.p95, (p) => p.p99]));
}

// -- alerts and plan history ---------------------------------------------------------------------------------
function when(t) { return new Date(t * 1000).toISOString().slice(11, 19); }

function renderAlerts(doc) {
  document.getElementById("pipelines").replaceChildren(...(Object.keys(doc.pipelines).length
    ? Object.entries(doc.pipelines).map(([name, p]) => el("li", {},
      `${name}: delivered ${p.delivered}, owed ${p.owed}, breaker ${p.breaker}` + (p.last_error ? ` (${p.last_error})` : "")))
    : [el("li", { class: "muted" }, "no pipelines configured: alerts go to the journal only")]));
  document.getElementById("events").replaceChildren(...doc.alerts.slice(-15).reverse().map((a) =>
    el("li", { class: a.severity }, `${when(a.at)} ${a.text}` + (a.count > 1 ? ` (×${a.count})` : "") + "  [" +
      (Object.entries(a.deliveries).map(([n, d]) => `${n.split(" ")[0]} ${d.state}`).join(", ") || "journal") + "]")));
}

function renderHistory(doc) {
  document.getElementById("plan-history").replaceChildren(...doc.history.slice(-8).reverse().map((h) =>
    el("li", {}, `${when(h.at)} ${h.decision}: ${h.reason}`)));
}

// -- polling -------------------------------------------------------------------------------------------------
async function tick() {
  try {
    const [st, live] = await Promise.all([api("GET", "/api/status"), api("GET", "/api/live")]);
    renderStatus(st);
    renderLive(live);
    if (state.updates % 3 === 0) {
      const [alerts, history] = await Promise.all([api("GET", "/api/alerts"), api("GET", "/api/plan/history")]);
      renderAlerts(alerts);
      renderHistory(history);
    }
    state.updates += 1;
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    say(`cannot reach the router: ${e.message}`, true);
  }
}

function controls() {
  document.getElementById("ramp-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const percent = Number(document.getElementById("ramp-percent").value);
    act(`Ramp the canary to ${percent}% of new sessions?`, "POST", "/api/ramp", { percent });
  });
  document.getElementById("promote").addEventListener("click", () => act(
    `Promote ${state.status ? state.status.canary : "the canary"} to stable?`, "POST", "/api/promote"));
  document.getElementById("rollback").addEventListener("click", () => act(
    "Roll the canary back to 0% of new sessions?", "POST", "/api/rollback"));
  document.getElementById("plan-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    // Sent as typed: the router parses it ("12,20,50,100", or "mirror:25,12,20,50,100" with a mirror step
    // first) and names a bad item in its refusal, which the page shows.
    const steps = document.getElementById("plan-steps").value.replace(/\s+/g, "");
    const hold = Number(document.getElementById("plan-hold").value);
    const shown = steps.split(",").map((s) => (s.startsWith("mirror") ? s : `${s}%`)).join(" → ");
    act(`Start a ramp plan ${shown}, holding each step ${hold} s?`, "POST", "/api/plan/start", { steps, hold });
  });
  // Ends every session on every router, this one too: the next poll gets a 401 and shows the sign-in form.
  document.getElementById("sign-out-all").addEventListener("click", () => act(
    "Sign out every ops dashboard session, on every router (this one too)?", "POST", "/api/sign-out-all"));
  for (const verb of ["pause", "resume", "abort"]) {
    document.getElementById(`plan-${verb}`).addEventListener("click", () => act(
      `${verb[0].toUpperCase() + verb.slice(1)} the ramp plan?` + (verb === "abort" ? " (share back to 0%)" : ""),
      "POST", `/api/plan/${verb}`, {}));
  }
}

controls();
tick();
setInterval(tick, 1000);
