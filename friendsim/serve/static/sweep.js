// friendsim sweep page: every run of the sweep with its status and headline figures.
// Values from the run directories are shown as text only.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  return node;
}

function fmt(v, digits) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);  // a list or object from sweep.json, as JSON text
  return typeof v === "number" && digits !== undefined ? v.toFixed(digits) : String(v);
}

async function load() {
  const r = await fetch("api/sweep");
  if (!r.ok) throw new Error("api/sweep: HTTP " + r.status);
  const data = await r.json();
  document.getElementById("title").textContent = "friendsim sweep · " + data.name;
  const badge = document.getElementById("status");
  badge.textContent = String(data.status);
  badge.className = "badge " + data.status;
  badge.title = "";
  const table = document.getElementById("runs");
  while (table.firstChild) table.removeChild(table.firstChild);
  const head = ["run", "cell", "rep", "seed", "status", "windows", "agent events", "failures", "cost USD", "final reward"];
  table.appendChild(el("tr", {}, ...head.map((h) => el("th", {}, h))));
  for (const row of data.runs) {
    // a run whose manifest says running while no process writes it was killed: not live
    const status = row.status === "running" && row.writing === false ? "stopped" : row.status;
    const link = el("a", { href: "runs/" + row.index + "/", class: "run-link" }, String(row.dir));
    table.appendChild(el("tr", { "data-status": String(status) },
      el("td", {}, link), el("td", { title: fmt(row.cell) }, fmt(row.label)), el("td", {}, fmt(row.rep)), el("td", {}, fmt(row.seed)),
      el("td", {}, fmt(status)), el("td", {}, fmt(row.windows)), el("td", {}, fmt(row.events)),
      el("td", {}, fmt(row.failures)), el("td", {}, fmt(row.cost_usd, 4)), el("td", {}, fmt(row.final_reward, 3))));
  }
  return data.status;
}

// The list is read again every 5 s while the sweep runs. A read that fails (the server briefly
// away) is tried again after 0.5 s, 1 s, 2 s ... (at most 8 s apart), the badge saying so.
async function main() {
  let failures = 0;
  for (;;) {
    let status = null;
    try {
      status = await load();
      failures = 0;
    } catch (e) {
      failures++;
      console.warn("friendsim sweep:", e.message);
      const badge = document.getElementById("status");
      badge.textContent = "retrying";
      badge.className = "badge";
      badge.title = e.message;
    }
    if (failures === 0 && status !== "running") return;
    await new Promise((ok) => setTimeout(ok, failures ? Math.min(500 * 2 ** (failures - 1), 8000) : 5000));
  }
}

main().catch((e) => console.error("friendsim sweep:", e));
