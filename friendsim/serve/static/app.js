// friendsim live view. Follows the run's log over Server-Sent Events (catch-up, then live) and
// per-window digests from api/windows. Agent text is untrusted: it only ever reaches the page as
// text nodes (textContent / createTextNode), never as markup.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const SVGNS = "http://www.w3.org/2000/svg";
const MAX_ITEMS = 400;
// The page keeps no log row beyond what its views show: the newest MAX_ITEMS rows the timeline
// can show (S.recent, with the votes on its posts), counters, and per window its reward means
// and ties. A window the page has let go of, and an agent's page, are read from api/rows.
const SHOWN = new Set(["action_failed", "agent_registered", "agent_suspended", "dm_sent", "followed",
  "guidance_issued", "intervention_applied", "item_injected", "moderation_decided", "post_created",
  "unfollowed", "window_ended", "window_started"]);
const MAX_AUTHORS = 20000;  // post authors remembered for "replying to" (the newest posts')
const MAX_DRAWN_NODES = 1000;  // as friendsim report: the most strongly tied agents are drawn
const RENDER_MS = 1000;  // while rows stream in, the views are rebuilt at most this often
const REFRESH_MS = 2000;  // and what they read from the server re-read at most this often
const RETRY_MS = 500;  // a read that failed is tried again after this, doubling each time
const MAX_RETRY_MS = 8000;  // up to this

const S = {
  info: null, windows: [], started: new Map(), count: 0, nPosts: 0, recent: [], evicted: false,
  votes: new Map(), authors: new Map(), remote: {}, selected: 0, live: true, control: null,
  lastSeq: 0, fetching: false, dirty: false, urgent: false, builtAt: 0, status: "connecting",
  caughtUpAt: 0, ids: null, joined: new Map(), named: false, windowsError: null, windowsFailures: 0,
  windowsTimer: null, source: null, streamFailures: 0, streamLost: false,
};

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, String(v));
    else if (k === "title" || k === "href") node.setAttribute(k, String(v));
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

async function getJSON(url, options) {
  const r = await fetch(url, options);
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

// Agents that join during a run (an add_agents intervention) are in neither the run's persona
// file nor its manifest, which api/run reads: the page learns them from their registration.
function joined(row) {
  if (S.info && S.info.agents[row.actor]) return;
  const attrs = row.payload.attributes || {};
  const a = { name: row.payload.name || row.actor, persona: attrs, dominant: attrs.dominant || null,
    lambdas: null, model: null };
  S.joined.set(row.actor, a);
  if (S.info) { S.info.agents[row.actor] = a; S.ids = null; }
}

function agentLabel(id) {
  const a = S.info && S.info.agents[id];
  if (!a) return String(id);
  return a.name && a.name !== id ? id + " · " + a.name : String(id);
}

function personaLine(id) {
  const a = S.info && S.info.agents[id];
  if (!a) return "";
  const p = a.persona || {};
  const bits = [a.dominant ? "motive " + a.dominant : null, p.occupation, p.stance, p.age ? "age " + p.age : null];
  return bits.filter(Boolean).join(", ");
}

function who(id) {
  const link = el("a", { class: "who", href: "#/agent/" + encodeURIComponent(id), title: personaLine(id) }, agentLabel(id));
  const a = S.info && S.info.agents[id];
  const frag = el("span", {}, link);
  if (a && a.dominant) frag.appendChild(el("span", { class: "muted" }, " (" + a.dominant + ")"));
  return frag;
}

// ---- ingesting log rows ---------------------------------------------------------------------

function ingest(row) {
  S.count++;
  S.lastSeq = row.seq;
  const p = row.payload;
  switch (row.kind) {
    case "window_started":
      S.started.set(p.window, row.seq);
      if (S.live) S.selected = p.window;
      break;
    case "window_ended":
      fetchWindows();
      refreshControl();
      break;
    case "agent_registered":
      joined(row);
      break;
    case "post_created":
      S.nPosts++;
      S.authors.set(p.post_id, row.actor);
      if (S.authors.size > MAX_AUTHORS) S.authors.delete(S.authors.keys().next().value);
      break;
    case "vote_cast": case "vote_changed": case "vote_cleared": {
      const v = S.votes.get(p.post_id);  // only the posts S.recent holds
      if (v) { if (row.kind === "vote_cleared") v.delete(row.actor); else v.set(row.actor, p.value); }
      break;
    }
  }
  if (SHOWN.has(row.kind)) {
    S.recent.push(row);
    if (row.kind === "post_created") S.votes.set(p.post_id, new Map());
    if (S.recent.length > MAX_ITEMS) {
      const old = S.recent.shift();
      if (old.kind === "post_created") S.votes.delete(old.payload.post_id);
      S.evicted = true;
    }
  }
  S.dirty = true;
}

// A view's rows from the server (api/rows, api/windows?agent=): r.data is null until they have
// arrived, then re-read at most every REFRESH_MS while rows stream in. A read that fails is
// tried again after RETRY_MS, twice that after another failure, ... at most MAX_RETRY_MS apart,
// for as long as the view still asks for these rows (not once the user has moved on); r.error
// says why meanwhile, and r.data keeps the rows last read.
function remote(name, url) {
  let r = S.remote[name];
  if (!r || r.url !== url) {
    r = S.remote[name] = { url, data: null, error: null, failures: 0, retryAt: 0, pending: false,
      seq: -1, at: 0, timer: null };
  }
  const now = Date.now();
  if (r.pending) return r;
  if (r.error !== null && now < r.retryAt) {
    wake(name, r, r.retryAt - now);
  } else if (r.error !== null || r.data === null || (r.seq < S.lastSeq && now - r.at >= REFRESH_MS)) {
    r.pending = true;
    const seq = S.lastSeq;
    getJSON(url).then((d) => {
      r.data = d; r.error = null; r.failures = 0; r.seq = seq;
    }, (e) => {
      console.warn(name + ":", e.message);
      r.error = e.message; r.failures++; r.retryAt = Date.now() + backoff(r.failures);
    }).finally(() => {
      r.pending = false; r.at = Date.now();
      if (S.remote[name] === r) { S.dirty = true; S.urgent = true; }
    });
  } else if (r.seq < S.lastSeq) {
    // rows arrived within REFRESH_MS of the last read (a run's last ones): read them when that
    // is up, even if nothing else arrives by then to build the view again
    wake(name, r, REFRESH_MS - (now - r.at));
  }
  return r;
}

// The views are built again in ms (once: a view that no longer asks for r reads nothing).
function wake(name, r, ms) {
  if (r.timer) return;
  r.timer = setTimeout(() => {
    r.timer = null;
    if (S.remote[name] === r) { S.dirty = true; S.urgent = true; }
  }, Math.max(0, ms));
}

function backoff(failures) {
  return Math.min(RETRY_MS * 2 ** (failures - 1), MAX_RETRY_MS);
}

function retrying(r) {
  return "could not read them (" + r.error + "), retrying";
}

function localVotes(pid) {
  const v = S.votes.get(pid);
  let up = 0, down = 0;
  if (v) for (const x of v.values()) { if (x > 0) up++; else if (x < 0) down++; }
  return [up, down];
}

const LOCAL = { votes: localVotes, author: (pid) => S.authors.get(pid) };

function fromServer(data) {
  return {
    votes: (pid) => (data.votes && data.votes[pid]) || [0, 0],
    author: (pid) => data.authors && data.authors[pid],
  };
}

function summarise(d) {
  // a window's digest as the page keeps it: reward means over its agents, not every agent's
  const means = {};
  const rows = Object.values(d.rewards);
  for (const c of [...S.info.components, "total"]) {
    means[c] = rows.length ? rows.map((r) => r[c]).reduce((a, b) => a + b, 0) / rows.length : 0;
  }
  return { window: d.window, start_seq: d.start_seq, end_seq: d.end_seq, t: d.t, ties: d.ties, means };
}

// The windows' digests, from the first the page lacks: read when the page opens and when a
// window ends. A read that fails is tried again, backing off (S.windowsError says why meanwhile).
async function fetchWindows() {
  if (S.fetching) { S.refetch = true; return; }
  S.fetching = true;
  clearTimeout(S.windowsTimer);
  try {
    do {
      S.refetch = false;
      const from = S.windows.length ? S.windows[S.windows.length - 1].window + 1 : 1;
      const data = await getJSON("api/windows?from=" + from);
      for (const w of data.windows) {
        if (!S.windows.length || w.window > S.windows[S.windows.length - 1].window) S.windows.push(summarise(w));
      }
    } while (S.refetch);
    S.windowsError = null; S.windowsFailures = 0;
  } catch (e) {
    console.warn("windows:", e.message);
    S.windowsError = e.message; S.windowsFailures++;
    S.windowsTimer = setTimeout(fetchWindows, backoff(S.windowsFailures));
  } finally {
    S.fetching = false;
    S.dirty = true;
  }
}

// api/run carries every agent's persona (megabytes for a large run): read until it names the
// run's agents (a page opened before the run was written sees none at first); the polls then
// read api/status, the same object without them. Agents learned from registration rows do not
// count (S.named): a page opened before the run would stop at them, without their personas.
async function refreshInfo() {
  const known = S.named;
  S.info = known ? Object.assign({}, S.info, await getJSON("api/status")) : await getJSON("api/run");
  if (!known) {
    S.named = Object.keys(S.info.agents).length > 0;
    for (const [id, a] of S.joined) if (!S.info.agents[id]) S.info.agents[id] = a;
    S.ids = null;
  }
  // A manifest left at "running" with no process writing the run: killed, not live.
  S.status = S.info.status === "running" && S.info.writing === false ? "stopped" : S.info.status;
  S.dirty = true;
}

async function refreshControl() {
  if (!S.info || !S.info.control) return;
  try {
    S.control = await getJSON("api/control");
  } catch (e) {
    console.warn("control:", e.message);
  }
  S.dirty = true;
}

async function sendControl(action) {
  S.control = await getJSON("api/control", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Friendsim-Control": "1" },
    body: JSON.stringify({ action }),
  });
  S.dirty = true;
}

// ---- rendering --------------------------------------------------------------------------------

function windowRange(w) {
  // window w's rows: from its window_started up to the next window's (so the coach's tips,
  // recorded just after the window closed, are shown with the window they are about)
  const start = S.started.get(w);
  if (start === undefined) return [0, Infinity];
  const next = S.started.get(w + 1);
  return [start, next !== undefined ? next - 1 : Infinity];
}

function itemFor(row, ctx) {
  const p = row.payload;
  const meta = el("div", { class: "meta" }, "#" + row.seq + " · t=" + Math.round(row.t) + " · ");
  switch (row.kind) {
    case "post_created": {
      const kind = p.parent_id != null ? "reply" : (p.quote_of != null ? "repost" : "post");
      meta.appendChild(el("span", {}, kind + (p.topic ? " · " + p.topic : "") + (p.tone ? " · " + p.tone : "")));
      const [up, down] = ctx.votes(p.post_id);
      const li = el("li", { class: "item " + kind, "data-seq": row.seq, "data-post-id": p.post_id }, meta,
        who(row.actor));
      if (p.parent_id != null) {
        const parent = ctx.author(p.parent_id);
        li.appendChild(el("span", { class: "muted" }, " ↳ replying to " + (parent !== undefined ? agentLabel(parent) : "#" + p.parent_id)));
      }
      if (p.quote_of != null) li.appendChild(el("span", { class: "muted" }, " ⟳ reposting #" + p.quote_of));
      li.appendChild(el("div", { class: "text" }, p.text));
      li.appendChild(el("div", { class: "meta" }, "▲ " + up + "  ▼ " + down));
      return li;
    }
    case "dm_sent":
      meta.appendChild(el("span", {}, "DM"));
      return el("li", { class: "item dm", "data-seq": row.seq }, meta, who(row.actor),
        el("span", { class: "muted" }, " → "), who(p.recipient), el("div", { class: "text" }, p.text));
    case "followed": case "unfollowed":
      return el("li", { class: "item follow", "data-seq": row.seq }, meta, who(row.actor),
        el("span", {}, row.kind === "followed" ? " follows " : " unfollows "), who(p.target));
    case "guidance_issued": {
      const li = el("li", { class: "item guidance", "data-seq": row.seq }, meta,
        el("span", {}, "coach (" + p.coach + ") → "), who(p.agent));
      const ol = el("ol", {});
      for (const tip of p.tips) ol.appendChild(el("li", {}, "• " + tip.text));
      li.appendChild(ol);
      return li;
    }
    case "action_failed":
      return el("li", { class: "item failure", "data-seq": row.seq }, meta, who(row.actor),
        el("span", {}, " failed at " + p.stage + ": " + p.reason), el("div", { class: "text" }, p.detail || ""));
    case "window_started":
      return el("li", { class: "item", "data-seq": row.seq }, meta, el("strong", {}, "window " + p.window + " starts"));
    case "window_ended":
      return el("li", { class: "item", "data-seq": row.seq }, meta, el("strong", {}, "window " + p.window + " ends"));
    case "agent_registered":
      return el("li", { class: "item", "data-seq": row.seq }, meta, who(row.actor), el("span", {}, " joined"));
    case "intervention_applied":
      return el("li", { class: "item", "data-seq": row.seq }, meta,
        el("strong", {}, "intervention " + p.intervention + (p.name ? " (" + p.name + ")" : "")));
    case "item_injected":
      return el("li", { class: "item", "data-seq": row.seq }, meta,
        el("span", {}, "#" + p.post_id + " injected, truth: " + p.truth + (p.source ? " · " + p.source : "")));
    case "moderation_decided":
      return el("li", { class: "item failure", "data-seq": row.seq }, meta,
        el("span", {}, "moderator " + p.moderator + ": " + p.action + " #" + p.post_id + " by "), who(p.author),
        el("div", { class: "text" }, p.label || p.reason || ""));
    case "agent_suspended":
      return el("li", { class: "item failure", "data-seq": row.seq }, meta, who(p.agent),
        el("span", {}, p.until_window == null ? " removed" : " suspended, windows " + p.from_window + "–" + p.until_window));
    default:
      return null;
  }
}

function timelineRows(lo, hi) {
  // S.recent holds every shown row from its first on: enough unless the range starts before
  // that and S.recent has fewer than MAX_ITEMS rows in it (or a reply's parent is older than
  // the authors the page remembers)
  const rows = [];
  for (let i = S.recent.length - 1; i >= 0 && rows.length < MAX_ITEMS; i--) {
    const row = S.recent[i];
    if (row.seq < lo) break;
    if (row.seq <= hi) rows.push(row);
  }
  const known = (r) => r.kind !== "post_created" || r.payload.parent_id == null || S.authors.has(r.payload.parent_id);
  if ((!S.evicted || rows.length >= MAX_ITEMS || (S.recent.length && S.recent[0].seq <= lo)) && rows.every(known)) {
    return { rows, ctx: LOCAL };
  }
  const r = remote("timeline", "api/rows?from=" + lo + (hi === Infinity ? "" : "&to=" + hi) + "&limit=" + MAX_ITEMS);
  return { rows: r.data ? r.data.rows : null, ctx: r.data ? fromServer(r.data) : null, error: r.error !== null ? retrying(r) : null };
}

function renderTimeline() {
  const [lo, hi] = S.selected > 0 ? windowRange(S.selected) : [0, Infinity];
  const found = timelineRows(lo, hi);
  const caption = S.selected > 0 ? "window " + S.selected + ", newest first" : "newest first";
  if (!found.rows) { $("timeline-caption").textContent = caption + " (" + (found.error || "loading…") + ")"; return; }
  const box = $("timeline");
  clear(box);
  for (const row of found.rows) {
    const li = itemFor(row, found.ctx);
    if (li) box.appendChild(li);
  }
  $("timeline-caption").textContent = caption + (found.error ? " (" + found.error + ")" : "");
}

function digestAt(w) {
  let best = null;
  for (const d of S.windows) if (d.window <= w) best = d;
  return best;
}

function agentIds() {
  if (!S.info) return [];
  if (S.ids === null) {
    S.ids = Object.keys(S.info.agents).sort((a, b) => {
      const da = S.info.agents[a].dominant || "", db = S.info.agents[b].dominant || "";
      return da === db ? (a < b ? -1 : a > b ? 1 : 0) : (da < db ? -1 : 1);
    });
    S.motives = [...new Set(S.ids.map((id) => S.info.agents[id].dominant || "?"))].sort();
  }
  return S.ids;
}

function drawnIds(all, d, theta) {
  // more than MAX_DRAWN_NODES agents: those with the greatest total strength of the ties drawn
  // (then by id), as friendsim report draws them
  if (all.length <= MAX_DRAWN_NODES) return all;
  const tied = new Map();
  if (d) {
    for (const [u, v, s] of d.ties) {
      if (s < theta) continue;
      tied.set(u, (tied.get(u) || 0) + s);
      tied.set(v, (tied.get(v) || 0) + s);
    }
  }
  const keep = new Set([...all].sort((a, b) => (tied.get(b) || 0) - (tied.get(a) || 0) || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, MAX_DRAWN_NODES));
  return all.filter((id) => keep.has(id));
}

function renderNetwork() {
  const box = $("network");
  clear(box);
  const all = agentIds();
  if (!all.length) return;
  const theta = parseFloat($("theta").value || "0.05");
  const d = digestAt(S.selected || Infinity);
  const ids = drawnIds(all, d, theta);
  const n = ids.length;
  const pos = new Map();
  const R = 170, C = 210;
  ids.forEach((id, i) => {
    const a = (2 * Math.PI * i) / n - Math.PI / 2;
    pos.set(id, [C + R * Math.cos(a), C + R * Math.sin(a), a]);
  });
  let edges = 0;
  if (d) {
    for (const [u, v, s] of d.ties) {
      if (s < theta || !pos.has(u) || !pos.has(v)) continue;
      const [x1, y1] = pos.get(u), [x2, y2] = pos.get(v);
      box.appendChild(svg("line", { x1, y1, x2, y2, stroke: "#555", "stroke-opacity": 0.45, "stroke-width": 0.5 + 4 * s, class: "edge" }));
      edges++;
    }
  }
  const motives = S.motives;
  for (const id of ids) {
    const [x, y, a] = pos.get(id);
    const link = svg("a", { href: "#/agent/" + encodeURIComponent(id) });
    const dot = svg("circle", { cx: x, cy: y, r: 6, fill: COLORS[motives.indexOf(S.info.agents[id].dominant || "?") % COLORS.length], class: "node" });
    const title = svg("title", {});
    title.textContent = agentLabel(id) + " — " + personaLine(id);
    dot.appendChild(title);
    link.appendChild(dot);
    if (n <= 60) {
      const lx = C + (R + 16) * Math.cos(a), ly = C + (R + 16) * Math.sin(a);
      const t = svg("text", { x: lx, y: ly + 3, "text-anchor": Math.cos(a) > 0.2 ? "start" : Math.cos(a) < -0.2 ? "end" : "middle" });
      t.textContent = id;
      link.appendChild(t);
    }
    box.appendChild(link);
  }
  const drawn = n < all.length
    ? " (" + n.toLocaleString("en") + " most strongly tied of " + all.length.toLocaleString("en") + " agents drawn)" : "";
  $("network-caption").textContent = (d
    ? "after window " + d.window + ": " + edges + " ties with strength ≥ θ; colour = dominant motive (" + motives.join(", ") + ")"
    : "no window has closed yet") + drawn
    + (S.windowsError ? " (could not read the windows (" + S.windowsError + "), retrying)" : "");
}

function renderRewards() {
  const box = $("rewards");
  clear(box);
  const legend = $("rewards-legend");
  clear(legend);
  if (!S.info) return;
  const comps = [...S.info.components, "total"];
  const upto = S.selected || Infinity;
  const ws = S.windows.filter((d) => d.window <= upto);
  const W = 420, H = 240, L = 34, B = 22, T = 8, Rm = 8;
  box.appendChild(svg("line", { x1: L, y1: H - B, x2: W - Rm, y2: H - B, stroke: "#999" }));
  box.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
  for (const yv of [0, 0.5, 1]) {
    const y = H - B - yv * (H - B - T);
    const t = svg("text", { x: L - 4, y: y + 3, "text-anchor": "end" });
    t.textContent = String(yv);
    box.appendChild(t);
  }
  const maxW = Math.max(2, ...ws.map((d) => d.window));
  const xOf = (w) => L + ((w - 1) / (maxW - 1)) * (W - L - Rm);
  const yOf = (v) => H - B - v * (H - B - T);
  comps.forEach((c, i) => {
    const color = c === "total" ? "#000" : COLORS[i % COLORS.length];
    const pts = ws.map((d) => xOf(d.window).toFixed(1) + "," + yOf(d.means[c]).toFixed(1));
    if (pts.length) box.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": c === "total" ? 2 : 1.4, class: "curve", "data-component": c }));
    const sw = el("span", { class: "swatch" });
    sw.style.background = color;
    legend.appendChild(el("span", {}, sw, c));
  });
  const xl = svg("text", { x: W / 2, y: H - 4, "text-anchor": "middle" });
  xl.textContent = "window (" + ws.length + " closed)";
  box.appendChild(xl);
}

function renderControls() {
  const box = $("controls");
  if (!S.info || !S.info.control) { box.hidden = true; return; }
  box.hidden = false;
  const c = S.control || {};
  $("btn-pause").disabled = !!c.paused;
  $("btn-resume").disabled = !c.paused;
  $("control-state").textContent = c.paused
    ? (c.waiting_before ? "paused before window " + c.waiting_before : "pausing after this window")
    : "running (window " + (c.windows_started || 0) + ")";
}

function renderHeader() {
  const info = S.info;
  $("title").textContent = "friendsim · " + (info ? info.name : "");
  const badge = $("status");
  let status = S.status;
  if (S.control && S.control.paused && S.control.waiting_before) status = "paused";
  badge.textContent = status;
  badge.className = "badge " + status;
  badge.title = status === "stopped" ? info.notes[0] : "";
  $("counts").textContent = S.count + " events · " + S.nPosts + " posts · " + S.windows.length + " windows closed"
    + (S.streamLost ? " · the log's stream was lost, reconnecting" : "");
  const nWin = Math.max(0, ...S.started.keys());
  const scrub = $("scrubber");
  scrub.max = String(nWin);
  if (S.live) S.selected = nWin;
  scrub.value = String(S.selected);
  $("window-label").textContent = S.selected ? "window " + S.selected + " of " + nWin : "before the first window";
  if (info && $("theta").options.length === 0) {
    for (const th of info.thetas) $("theta").appendChild(el("option", { value: String(th) }, String(th)));
    const pref = info.thetas.includes(0.05) ? "0.05" : String(info.thetas[0] || "0.05");
    $("theta").value = pref;
  }
  $("notes").textContent = info ? info.notes.join(" ") : "";
}

function renderAgent(id) {
  const a = S.info.agents[id];
  $("agent-title").textContent = "Agent " + agentLabel(id);
  const dl = $("agent-persona");
  clear(dl);
  const persona = Object.assign({ dominant: a ? a.dominant : "", model: a ? a.model : "" }, a ? a.persona : {});
  if (a && a.lambdas) persona.lambdas = a.lambdas;
  for (const [k, v] of Object.entries(persona)) {
    if (v === null || v === undefined || v === "") continue;
    dl.appendChild(el("dt", {}, k));
    dl.appendChild(el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v)));
  }
  // its rows and its rewards are the server's (the page keeps neither): the lists are replaced
  // once both have arrived
  const hi = S.selected > 0 ? windowRange(S.selected)[1] : Infinity;
  const q = "agent=" + encodeURIComponent(id);
  const rowsRead = remote("agent-rows", "api/rows?" + q + (hi === Infinity ? "" : "&to=" + hi));
  const winsRead = remote("agent-windows", "api/windows?from=1&" + q);
  const failed = [rowsRead, winsRead].find((r) => r.error !== null);
  $("agent-status").textContent = failed ? "Its rows and rewards: " + retrying(failed) + "…" : "";
  const data = rowsRead.data, wins = winsRead.data;
  if (!data || !wins) return;
  const table = $("agent-rewards");
  clear(table);
  const comps = [...S.info.components, "total"];
  table.appendChild(el("tr", {}, el("th", {}, "window"), ...comps.map((c) => el("th", {}, c))));
  for (const d of wins.windows || []) {
    if (d.window > (S.selected || Infinity)) break;
    const r = d.rewards[id];
    if (!r) continue;
    table.appendChild(el("tr", {}, el("td", {}, String(d.window)), ...comps.map((c) => el("td", {}, r[c].toFixed(3)))));
  }
  const tips = $("agent-tips"), acts = $("agent-actions"), fails = $("agent-failures");
  clear(tips); clear(acts); clear(fails);
  const ctx = fromServer(data);
  const rows = data.rows || [];
  for (let i = rows.length - 1; i >= 0; i--) {  // newest first from the server: oldest first here
    const row = rows[i];
    if (row.kind === "guidance_issued" && row.payload.agent === id) {
      for (const tip of row.payload.tips) tips.appendChild(el("li", { class: "item guidance" }, el("div", { class: "meta" }, "after window " + row.payload.window + " · " + tip.action + (tip.target ? " → " + tip.target : "")), el("div", { class: "text" }, tip.text)));
    } else if (row.kind === "action_failed" && row.actor === id) {
      fails.appendChild(itemFor(row, ctx));
    } else if (row.actor === id && ["post_created", "dm_sent", "followed", "unfollowed"].includes(row.kind)) {
      acts.appendChild(itemFor(row, ctx));
    }
  }
}

function route() {
  const m = location.hash.match(/^#\/agent\/(.+)$/);
  const id = m ? decodeURIComponent(m[1]) : null;
  const isAgent = id !== null && S.info && S.info.agents[id] !== undefined;
  $("overview").hidden = isAgent;
  $("agent").hidden = !isAgent;
  return isAgent ? id : null;
}

function render() {
  S.dirty = false;
  renderHeader();
  renderControls();
  if (!S.info) return;
  const id = route();
  if (id !== null) { renderAgent(id); return; }
  renderTimeline();
  renderNetwork();
  renderRewards();
}

function frame() {
  if (S.dirty) {
    // While catching up on the rows logged before the page opened, only the counts move: every
    // view rebuilt at every frame made the catch-up quadratic in the agents (55 s at 10,000).
    // Then, while rows stream in, the views are rebuilt at most every RENDER_MS (at once after
    // a click, or when rows asked of the server arrive).
    const now = performance.now();
    try {
      if (S.lastSeq >= S.caughtUpAt && (S.urgent || now - S.builtAt >= RENDER_MS)) {
        S.urgent = false;
        S.builtAt = now;
        render();
      } else {
        renderHeader();
        renderControls();
      }
    } catch (e) { console.error(e); }
  }
  requestAnimationFrame(frame);
}

// The log's rows from the one after the last the page has. The browser opens the stream again
// by itself after a network error, but not after an answer that is not an event stream (a 5xx
// from the server or a proxy): the page then opens it again, backing off, saying so meanwhile.
// The stream is the batched form (batch=1): an event carries many rows, one JSONL line each (a
// line never holds a newline); an event per row cost the browser more than its rows' JSON.
function connect() {
  S.caughtUpAt = S.info ? S.info.last_seq : 0;
  const es = new EventSource("events/stream?batch=1&from=" + (S.lastSeq + 1));
  S.source = es;
  es.onmessage = (msg) => {
    for (const line of msg.data.split("\n")) {
      const row = JSON.parse(line);
      if (row.seq > S.lastSeq) ingest(row);
    }
  };
  es.onopen = () => {
    S.streamFailures = 0; S.streamLost = false;
    if (S.status === "connecting") S.status = "live";
    S.dirty = true;
  };
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED || S.source !== es) return;
    S.streamFailures++; S.streamLost = true; S.dirty = true;
    setTimeout(connect, backoff(S.streamFailures));
  };
}

function bind() {
  $("scrubber").addEventListener("input", () => {
    S.selected = parseInt($("scrubber").value, 10);
    S.live = S.selected === parseInt($("scrubber").max, 10) && $("live").checked;
    if (!S.live) $("live").checked = false;
    S.dirty = true; S.urgent = true;
  });
  $("btn-prev").addEventListener("click", () => {
    S.live = false; $("live").checked = false;
    S.selected = Math.max(0, S.selected - 1); S.dirty = true; S.urgent = true;
  });
  $("btn-next").addEventListener("click", () => {
    S.live = false; $("live").checked = false;
    S.selected = Math.min(parseInt($("scrubber").max, 10), S.selected + 1); S.dirty = true; S.urgent = true;
  });
  $("live").addEventListener("change", () => { S.live = $("live").checked; S.dirty = true; S.urgent = true; });
  $("theta").addEventListener("change", () => { S.dirty = true; S.urgent = true; });
  $("btn-pause").addEventListener("click", () => sendControl("pause").catch((e) => console.warn(e.message)));
  $("btn-resume").addEventListener("click", () => sendControl("resume").catch((e) => console.warn(e.message)));
  $("btn-step").addEventListener("click", () => sendControl("step").catch((e) => console.warn(e.message)));
  window.addEventListener("hashchange", () => { S.dirty = true; S.urgent = true; });
}

// The page cannot start without the run's info: a read of it that fails is tried again, backing
// off as the other reads do, the badge saying "retrying" and the notes why.
async function firstInfo() {
  for (let failures = 1; ; failures++) {
    try {
      return await refreshInfo();
    } catch (e) {
      console.warn("run:", e.message);
      $("status").textContent = "retrying";
      $("notes").textContent = "could not read the run (" + e.message + "), retrying";
      await new Promise((resolve) => setTimeout(resolve, backoff(failures)));
    }
  }
}

async function main() {
  bind();
  await firstInfo();
  await fetchWindows();
  await refreshControl();
  connect();
  // The run's status (running -> completed) and the pause state are not log rows: the page
  // re-reads them (two small JSON requests) every 2 s; the log itself streams.
  setInterval(() => { if (S.status !== "completed") refreshInfo().catch(() => {}); if (S.info && S.info.control) refreshControl(); }, 2000);
  requestAnimationFrame(frame);
}

main().catch((e) => console.error("friendsim view:", e));
