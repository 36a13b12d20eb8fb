// The mediagate dashboard: reads /api/v1/events (one JSON picture a second), derives
// rates from the counters' differences, keeps the last minutes of them for the plots,
// and redraws. Every string that came from a client (user agents, URLs, addresses,
// SIP call ids and tags) is set with textContent, never parsed as HTML.
"use strict";

const HISTORY_MS = 5 * 60 * 1000;
const RETRY_MS = 2000;
const COLORS = ["#2b6cb0", "#2f855a", "#c05621", "#6b46c1", "#b83280", "#2c7a7b"];

// The token: taken once from ?token=, then kept in memory only.
const params = new URLSearchParams(location.search);
const token = params.get("token");
if (token !== null) {
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
}

const state = {
  prev: null,            // the previous picture
  streamRates: new Map(),  // origin -> [[t, bps], ...]
  relayRate: [],           // [[t, pps], ...]
  seen: 0,
};

function $(id) { return document.getElementById(id); }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function td(text, cls) { return el("td", cls, text); }

function fmtRate(v, unit) {
  if (v === null || v === undefined) return "–";
  const steps = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [f, p] of steps) {
    if (v >= f) return (v / f).toFixed(v / f >= 100 ? 0 : 1) + " " + p + unit;
  }
  return Math.round(v) + " " + unit;
}

function fmtCount(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US");
}

function fmtBytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return n + " B";
}

function fmtDuration(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (x) => String(x).padStart(2, "0");
  return (h ? h + ":" + two(m) : m) + ":" + two(r);
}

function setLink(kind, text) {
  const l = $("link");
  l.className = "pill " + kind;
  l.textContent = text;
}

function showProblem(text) {
  const p = $("problem");
  p.hidden = !text;
  p.textContent = text || "";
}

function replaceRows(tbody, rows, columns, emptyText) {
  const frag = document.createDocumentFragment();
  if (rows.length === 0) {
    const tr = el("tr");
    const cell = td(emptyText, "empty");
    cell.colSpan = columns;
    tr.appendChild(cell);
    frag.appendChild(tr);
  }
  for (const r of rows) frag.appendChild(r);
  tbody.replaceChildren(frag);
}

function countText(shown, total, noun) {
  return shown < total ? "(" + shown + " of " + total + " " + noun + ")" : "(" + total + ")";
}

// Rate of a counter between two pictures; null without a previous value.
function rate(now, before, dt) {
  if (before === undefined || dt <= 0 || now < before) return null;
  return (now - before) / dt;
}

function pushHistory(series, t, v) {
  series.push([t, v]);
  while (series.length && series[0][0] < t - HISTORY_MS) series.shift();
}

function drawPlot(canvas, lines, unit) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const now = state.prev ? state.prev.at_unix_ms : Date.now();
  let max = 0;
  for (const l of lines) for (const [, v] of l.points) max = Math.max(max, v);
  const labelled = h >= 60;
  const top = labelled ? 14 : 2, bottom = labelled ? h - 14 : h - 2;
  const x = (t) => ((t - (now - HISTORY_MS)) / HISTORY_MS) * w;
  const y = (v) => bottom - (max > 0 ? (v / max) * (bottom - top) : 0);
  g.strokeStyle = "#e1e6eb";
  g.lineWidth = 1;
  g.beginPath();
  g.moveTo(0, bottom + 0.5);
  g.lineTo(w, bottom + 0.5);
  g.stroke();
  if (labelled) {
    g.fillStyle = "#6b7785";
    g.font = "11px system-ui, sans-serif";
    g.fillText("max " + fmtRate(max, unit), 4, 11);
    g.fillText("−5 min", 4, h - 2);
    g.fillText("now", w - 24, h - 2);
  }
  for (const l of lines) {
    if (l.points.length < 2) continue;
    g.beginPath();
    l.points.forEach(([t, v], i) => (i ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
    g.strokeStyle = l.color;
    g.lineWidth = 1.5;
    g.stroke();
    // A light area under the line, so a short history still reads at a glance.
    g.lineTo(x(l.points[l.points.length - 1][0]), bottom);
    g.lineTo(x(l.points[0][0]), bottom);
    g.closePath();
    g.globalAlpha = 0.15;
    g.fillStyle = l.color;
    g.fill();
    g.globalAlpha = 1;
  }
}

function renderRoles(roles) {
  const frag = document.createDocumentFragment();
  for (const r of roles) {
    const card = el("div", "card " + r.state);
    card.appendChild(el("span", "state", r.state));
    card.appendChild(el("div", "name", r.name));
    card.appendChild(el("div", "big", fmtCount(r.sessions)));
    card.appendChild(el("div", "muted", r.unit + " · " + r.serving));
    frag.appendChild(card);
  }
  $("roles").replaceChildren(frag);
}

function renderEdge(edge, pic, dt) {
  $("edge").hidden = false;
  const prevEdge = (state.prev && state.prev.edge) || {};
  if (edge.streams) {
    const before = new Map((prevEdge.streams || []).map((s) => [s.origin, s.bytes_in]));
    const rows = [];
    const live = new Set();
    edge.streams.forEach((s, i) => {
      live.add(s.origin);
      let series = state.streamRates.get(s.origin);
      if (!series) state.streamRates.set(s.origin, (series = []));
      const r = rate(s.bytes_in, before.get(s.origin), dt);
      if (r !== null) pushHistory(series, pic.at_unix_ms, r * 8);
      const tr = el("tr");
      tr.appendChild(td(s.origin, "text"));
      tr.appendChild(td(fmtCount(s.viewers), "n"));
      tr.appendChild(td(r === null ? "–" : fmtRate(r * 8, "bit/s"), "n"));
      const plot = td("");
      const canvas = el("canvas", "spark");
      canvas.width = 160;
      canvas.height = 28;
      plot.appendChild(canvas);
      tr.appendChild(plot);
      tr.appendChild(td(fmtCount(s.packets_in), "n"));
      tr.appendChild(td(fmtCount(s.upstream_sessions), "n"));
      tr.appendChild(td(fmtCount(s.viewer_skipped), "n"));
      rows.push([tr, canvas, series, COLORS[i % COLORS.length]]);
    });
    for (const origin of state.streamRates.keys()) {
      if (!live.has(origin)) state.streamRates.delete(origin);
    }
    replaceRows($("streams"), rows.map((r) => r[0]), 7, "no live streams");
    for (const [, canvas, series, color] of rows) drawPlot(canvas, [{ points: series, color }], "bit/s");
    $("streams-count").textContent = countText(edge.streams.length, edge.streams_total, "streams");
  }
  if (edge.viewers) {
    const before = new Map((prevEdge.viewers || []).map((v) => [v.id, v.bytes]));
    const rows = edge.viewers.map((v) => {
      const tr = el("tr");
      const r = rate(v.bytes, before.get(v.id), dt);
      tr.appendChild(td(v.address));
      tr.appendChild(td(v.transport));
      tr.appendChild(td(v.url, "text url"));
      tr.appendChild(td(v.user_agent === null ? "–" : v.user_agent, "text ua"));
      tr.appendChild(td(r === null ? "–" : fmtRate(r * 8, "bit/s"), "n"));
      tr.appendChild(td(fmtBytes(v.bytes), "n"));
      tr.appendChild(td(fmtCount(v.lost), "n"));
      tr.appendChild(td(fmtDuration(v.watched_seconds), "n"));
      return tr;
    });
    replaceRows($("viewers"), rows, 8, "no viewers");
    $("viewers-count").textContent = countText(edge.viewers.length, edge.viewers_total, "viewers");
  }
}

function legKey(call, stream, side) {
  return call.call_id + "\u0000" + call.from_tag + "\u0000" + stream.index + "\u0000" + side;
}

function renderRelay(relay, pic, dt) {
  $("relay").hidden = false;
  if (!relay.calls) return;
  const prevCalls = (state.prev && state.prev.relay && state.prev.relay.calls) || [];
  const before = new Map();
  for (const c of prevCalls) {
    for (const s of c.streams || []) {
      for (const side of ["caller", "callee"]) {
        if (s[side]) before.set(legKey(c, s, side), s[side].packets);
      }
    }
  }
  let pps = null;
  const rows = relay.calls.map((c) => {
    const tr = el("tr");
    tr.appendChild(td(c.call_id, "text callid"));
    tr.appendChild(td(c.from_tag, "text"));
    tr.appendChild(td(c.to_tag, "text"));
    tr.appendChild(td(c.answered ? "answered" : "offered"));
    tr.appendChild(td(fmtDuration(c.duration_ms / 1000), "n"));
    const media = td("", "text");
    for (const s of c.streams || []) {
      for (const side of ["caller", "callee"]) {
        const leg = s[side];
        if (!leg) continue;
        const r = rate(leg.packets, before.get(legKey(c, s, side)), dt);
        if (r !== null) pps = (pps || 0) + r;
      }
      const line = el("div");
      line.appendChild(el("span", "tag", s.media_type + (s.caller && s.caller.codec ? " " + s.caller.codec : "")));
      const from = s.caller ? s.caller.remote : "?";
      const to = s.callee ? s.callee.remote : "?";
      const packets = (s.caller ? s.caller.packets : 0) + (s.callee ? s.callee.packets : 0);
      line.appendChild(document.createTextNode(from + " ⇄ " + to + " · " + fmtCount(packets) + " packets"));
      media.appendChild(line);
    }
    tr.appendChild(media);
    return tr;
  });
  replaceRows($("calls"), rows, 6, "no calls");
  $("calls-count").textContent = countText(relay.calls.length, relay.calls_total, "calls");
  if (state.prev && state.prev.relay && dt > 0) pushHistory(state.relayRate, pic.at_unix_ms, pps || 0);
  const note = relay.calls.length < relay.calls_total ? " over the listed calls" : "";
  $("relay-rate").textContent = "(" + fmtRate(pps || 0, "packet/s") + note + ")";
  drawPlot($("relay-plot"), [{ points: state.relayRate, color: COLORS[0] }], "packet/s");
}

function render(pic) {
  const dt = state.prev ? (pic.at_unix_ms - state.prev.at_unix_ms) / 1000 : 0;
  renderRoles(pic.roles || []);
  if (pic.edge) renderEdge(pic.edge, pic, dt);
  else $("edge").hidden = true;
  if (pic.relay) renderRelay(pic.relay, pic, dt);
  else $("relay").hidden = true;
  const draining = (pic.roles || []).filter((r) => r.state !== "running").map((r) => r.name + " " + r.state);
  showProblem(draining.length ? "Not serving new sessions: " + draining.join(", ") : "");
  state.prev = pic;
  state.seen += 1;
  $("updated").textContent = "updated " + new Date(pic.at_unix_ms).toLocaleTimeString();
  document.body.dataset.pictures = String(state.seen);
}

async function follow() {
  const headers = { Accept: "text/event-stream" };
  if (token) headers.Authorization = "Bearer " + token;
  const resp = await fetch("/api/v1/events", { headers, cache: "no-store" });
  if (!resp.ok) {
    let why = "HTTP " + resp.status;
    try { why = (await resp.json()).error || why; } catch (_) { /* not JSON */ }
    throw new Error(why);
  }
  setLink("live", "live");
  showProblem("");
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the event stream ended");
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (name === "snapshot" && data.length) render(JSON.parse(data.join("\n")));
    }
  }
}

async function run() {
  for (;;) {
    try {
      await follow();
    } catch (e) {
      setLink("down", "reconnecting");
      showProblem("No live data: " + e.message + ". Retrying in " + RETRY_MS / 1000 + " s.");
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
}

window.addEventListener("resize", () => {
  drawPlot($("relay-plot"), [{ points: state.relayRate, color: COLORS[0] }], "packet/s");
});

run();
