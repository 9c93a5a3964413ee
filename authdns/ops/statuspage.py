"""The status page: one self-contained HTML document (no external assets, no CDN) whose
script polls ``/status.json`` every second and redraws, without reloading the page:
served zones with serial, last load and the problems of the last load; every balanced
RRset with its members' health, configured and effective weight, first positions, the
share of its group's mail it gets and the share it should get (ops/control.py's status
reply: "mail_share", "target"), and a chart of each member's share of its group's mail
over the last minute (among the answers given in the last five seconds, so a member that
goes down visibly leaves and returns), with its target as a dashed line.

``page_data()`` shapes an observation (balancing/counters.py) into that JSON. Changes nothing;
imports nothing but the read model (ops/metrics.py serves the page).
"""

from __future__ import annotations

from typing import Any

from authdns.balancing.counters import Observation


def page_data(seen: Observation) -> dict[str, Any]:
    status = seen.status
    problems = status["problems"]
    zones = [{**zone, "loaded_at": seen.zones_loaded_at.get(zone["origin"]),
              "problems": problems.get(zone["file"], [])} for zone in status["zones"]]
    served = {zone["file"] for zone in status["zones"]}
    unloaded = {path: lines for path, lines in problems.items() if path not in served}
    rrsets = [{
        "owner": rrset["owner"], "type": rrset["type"], "policy": rrset["policy"], "fail_open": rrset["fail_open"],
        "ttl": rrset["served_ttl"], "short_ttl": rrset["short_ttl"],
        "members": [{key: member[key] for key in ("member", "preference", "status", "configured_weight",
                                                  "effective_weight", "first", "given", "share", "mail",
                                                  "mail_share", "target", "drained", "last_probe", "agent")} for member in rrset["members"]],
    } for rrset in status["rrsets"]]
    return {"time": seen.time, "zones": zones, "files_not_loaded": unloaded, "reloads": seen.reloads,
            "failed_reloads": seen.failed_reloads, "rrsets": rrsets, "workers": status.get("workers"),
            "answers": sum(seen.totals.queries.answers)}


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>authdns status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.4em; margin: 0 0 .2em; } h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
  table { border-collapse: collapse; margin: .3em 0; }
  th, td { border-bottom: 1px solid #ddd; padding: .25em .7em; text-align: left; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .status.up { color: #176b2c; font-weight: 600; } .status.degraded { color: #a35a00; font-weight: 600; }
  .status.down { color: #b00020; font-weight: 700; } .problem { color: #b00020; }
  .rrset { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
  svg { border: 1px solid #ccc; background: #fafafa; } .muted { color: #777; }
  .legend span { margin-right: 1em; white-space: nowrap; }
</style>
</head>
<body>
<h1>authdns</h1>
<div id="summary" class="muted">loading…</div>
<h2>Zones</h2>
<table id="zones"><thead><tr><th>zone</th><th>serial</th><th>records</th><th>loaded</th><th>file</th>
<th>last load</th></tr></thead><tbody></tbody></table>
<div id="unloaded"></div>
<h2>Balanced RRsets</h2>
<div id="rrsets"></div>
<script>
"use strict";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const HISTORY = 60, WINDOW = 5;
const samples = {};   // rrset key -> [{t, mail: {member: answers' worth of mail}}]
function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
}
function percent(share) { return share === null ? "-" : (share * 100).toFixed(1) + "%"; }
function ago(then, now) { return then ? Math.max(0, Math.round(now - then)) + " s ago" : "-"; }
function shares(key, members) {
  // Per preference group, as the status reply's shares: a backup group's mail is its own.
  const list = samples[key], points = {}, group = {};
  members.forEach(m => { group[m.member] = m.preference; });
  for (let i = 1; i < list.length; i++) {
    const from = list[Math.max(0, i - WINDOW)], to = list[i], total = {};
    const got = m => to.mail[m] - (from.mail[m] || 0);
    for (const m in to.mail) total[group[m]] = (total[group[m]] || 0) + got(m);
    for (const m in to.mail) {
      (points[m] = points[m] || []).push(total[group[m]] > 0 ? got(m) / total[group[m]] : null);
    }
  }
  return points;
}
function chart(key, members) {
  const w = 360, h = 140, points = shares(key, members);
  let svg = `<svg width="${w}" height="${h + 20}" role="img" aria-label="share of mail per member">`;
  for (const y of [0, 0.5, 1]) {
    svg += `<line x1="0" x2="${w}" y1="${h - y * h}" y2="${h - y * h}" stroke="#ddd"/>` +
           `<text x="2" y="${Math.min(h - 2, h - y * h + 12)}" font-size="10" fill="#777">${y * 100}%</text>`;
  }
  members.forEach((m, i) => {
    const series = (points[m.member] || []).slice(-HISTORY);
    const step = w / (HISTORY - 1), offset = HISTORY - series.length;
    const coords = series.map((v, j) => v === null ? null : `${((offset + j) * step).toFixed(1)},${(h - v * h).toFixed(1)}`)
      .filter(c => c !== null);
    if (coords.length) svg += `<polyline fill="none" stroke-width="2" stroke="${COLORS[i % COLORS.length]}" points="${coords.join(" ")}"/>`;
    if (m.target !== null) {
      svg += `<line class="target" x1="0" x2="${w}" y1="${(h - m.target * h).toFixed(1)}" y2="${(h - m.target * h).toFixed(1)}" ` +
             `stroke="${COLORS[i % COLORS.length]}" stroke-width="1" stroke-dasharray="4 3"/>`;
    }
  });
  svg += `<text x="${w - 4}" y="${h + 15}" font-size="10" fill="#777" text-anchor="end">share of mail, last minute; dashed: should get</text></svg>`;
  const legend = members.map((m, i) => `<span style="color:${COLORS[i % COLORS.length]}">&#9632; ${esc(m.member)}</span>`).join("");
  return `<div>${svg}<div class="legend">${legend}</div></div>`;
}
function agentNote(a) {
  const taken = a.maint ? "maint" : a.drained ? "drain" : `${a.percent}%`;
  return a.ok ? `agent "${a.reply}" ${taken}` : `agent failed (${a.reply}), kept ${taken}`;
}
function render(data) {
  const workers = data.workers ? `, ${data.workers.length} workers` : "";
  document.getElementById("summary").textContent =
    `${data.zones.length} zone(s)${workers}; ${data.answers} answers; reloads ${data.reloads} (${data.failed_reloads} with errors)`;
  document.querySelector("#zones tbody").innerHTML = data.zones.map(z =>
    `<tr><td>${esc(z.origin)}</td><td class="num">${z.serial}</td><td class="num">${z.records}</td>` +
    `<td>${ago(z.loaded_at, data.time)}</td><td>${esc(z.file)}</td>` +
    `<td>${z.problems.length ? z.problems.map(p => `<div class="problem">${esc(p)}</div>`).join("") : "ok"}</td></tr>`).join("");
  document.getElementById("unloaded").innerHTML = Object.entries(data.files_not_loaded).map(([file, lines]) =>
    `<div class="problem">not loaded: ${esc(file)}: ${lines.map(esc).join("; ")}</div>`).join("");
  document.getElementById("rrsets").innerHTML = data.rrsets.map(r => {
    const key = r.owner + " " + r.type;
    const rows = r.members.map(m =>
      `<tr data-member="${esc(m.member)}"><td>${esc(m.member)}</td><td class="num">${m.preference ?? "-"}</td>` +
      `<td class="status ${m.status}">${m.drained ? "drained, " : ""}${m.status}</td>` +
      `<td class="num">${esc(m.configured_weight)}</td><td class="num">${m.effective_weight}</td>` +
      `<td class="num">${m.first}</td><td class="num">${percent(m.share)}</td>` +
      `<td class="num mail">${percent(m.mail_share)}</td><td class="num target">${percent(m.target)}</td>` +
      `<td class="muted">${m.agent ? esc(agentNote(m.agent)) + "; " : ""}${esc(m.last_probe || "")}</td></tr>`).join("");
    const ttl = `TTL ${r.ttl}${r.short_ttl ? " (" + esc(r.short_ttl) + ")" : ""}`;
    return `<h3>${esc(key)} <span class="muted">${esc(r.policy)}${r.fail_open ? ", FAIL-OPEN" : ""}, ` +
      `<span class="ttl">${ttl}</span></span></h3>` +
      `<div class="rrset"><table class="members"><thead><tr><th>member</th><th>pref</th><th>health</th>` +
      `<th>weight</th><th>effective</th><th>first</th><th title="of first positions in its group">share</th>` +
      `<th title="of its group's mail: a sender's even split of the answers given">gets</th>` +
      `<th title="its effective weight over its group's">should get</th><th>last probe</th></tr></thead>` +
      `<tbody>${rows}</tbody></table>${chart(key, r.members)}</div>`;
  }).join("") || "<p class='muted'>none</p>";
}
async function refresh() {
  try {
    const response = await fetch("status.json", {cache: "no-store"});
    const data = await response.json();
    for (const r of data.rrsets) {
      const key = r.owner + " " + r.type, mail = {};
      r.members.forEach(m => { mail[m.member] = m.mail; });
      (samples[key] = samples[key] || []).push({t: data.time, mail});
      if (samples[key].length > HISTORY + WINDOW) samples[key].shift();
    }
    render(data);
  } catch (error) {
    document.getElementById("summary").textContent = "cannot reach the server: " + error;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""
