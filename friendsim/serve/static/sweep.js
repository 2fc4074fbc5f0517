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
  const table = document.getElementById("runs");
  while (table.firstChild) table.removeChild(table.firstChild);
  const head = ["run", "cell", "rep", "seed", "status", "windows", "agent events", "failures", "cost USD", "final reward"];
  table.appendChild(el("tr", {}, ...head.map((h) => el("th", {}, h))));
  for (const row of data.runs) {
    // a run whose manifest says running while no process writes it was killed: not live
    const status = row.status === "running" && row.writing === false ? "stopped" : row.status;
    const link = el("a", { href: "runs/" + row.index + "/", class: "run-link" }, String(row.dir));
    table.appendChild(el("tr", { "data-status": String(status) },
      el("td", {}, link), el("td", {}, fmt(row.cell)), el("td", {}, fmt(row.rep)), el("td", {}, fmt(row.seed)),
      el("td", {}, fmt(status)), el("td", {}, fmt(row.windows)), el("td", {}, fmt(row.events)),
      el("td", {}, fmt(row.failures)), el("td", {}, fmt(row.cost_usd, 4)), el("td", {}, fmt(row.final_reward, 3))));
  }
  return data.status;
}

async function main() {
  let status = await load();
  // a sweep still running: refresh the list every 5 s until it is done
  while (status === "running") {
    await new Promise((ok) => setTimeout(ok, 5000));
    status = await load();
  }
}

main().catch((e) => console.error("friendsim sweep:", e));
