// zhbert monitor page: polls the JSON API, keeps each run's records, draws uPlot charts.
// History is fetched incrementally (byte offset), so each poll only moves new lines.
"use strict";

const POLL_MS = 2000;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"];
const CHARTS = [  // title, [record field, label, dashed]
  ["loss", [["loss", "loss"], ["eval_mlm_loss", "held-out MLM loss", true]]],
  ["MLM accuracy", [["mlm_acc", "train"], ["eval_mlm_acc", "held-out", true]]],
  ["NSP accuracy", [["nsp_acc", "train"], ["eval_nsp_acc", "held-out", true]]],
  ["learning rate", [["lr", "lr"]]],
];
const X_FIELD = {step: "step", tokens: "tokens", seconds: "elapsed"};

const runs = {};        // id -> {offset, byStep: Map(type:step -> record), events, color}
const charts = {};      // title -> {plot, key}
let studyData = null;   // last /study answer for the selected run
let studyKey = "";

const $ = (id) => document.getElementById(id);
const fmt = (v, d = 3) => v == null ? "-" : (typeof v === "number" ? +v.toPrecision(d) + "" : String(v));
const pct = (v) => v == null ? "-" : (100 * v).toFixed(2) + "%";
const dur = (s) => s == null || !isFinite(s) ? "-" : s < 90 ? s.toFixed(0) + " s" :
  s < 5400 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h";

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;  // textContent: run names come from the file system
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// ---------------------------------------------------------------- data

async function pullHistory(id) {
  // A run's colour is fixed when first seen, so it is the same on every chart (charts
  // have one or two series per run) and does not shift when runs come or go.
  const run = runs[id] || (runs[id] = {offset: 0, byStep: new Map(), events: [],
                                       color: COLORS[Object.keys(runs).length % COLORS.length]});
  for (let i = 0; i < 50; i++) {  // keep asking while the server says there is more
    // gen: the server's count of restarts of this file (a resume rewrites it); a stale one resets us
    const gen = run.gen == null ? "" : run.gen;
    const h = await getJSON(`/api/runs/${encodeURIComponent(id)}/history?offset=${run.offset}&gen=${gen}`);
    if (h.reset) { run.byStep.clear(); run.events = []; }
    for (const rec of h.records) {
      if (rec.type === "train" || rec.type === "eval") run.byStep.set(rec.type + ":" + rec.step, rec);
      else if (rec.type === "event") run.events.push(rec);
    }
    const grew = h.offset !== run.offset || h.reset;
    run.offset = h.offset;
    run.gen = h.gen;
    if (!h.more) return grew;
  }
  return true;
}

function series(run, field, axis) {
  // (xs, ys) sorted by x; a rolled-back step keeps its last record (Map overwrite).
  const pts = [];
  for (const r of run.byStep.values()) {
    const x = r[X_FIELD[axis]], y = r[field];
    if (typeof x === "number" && typeof y === "number") pts.push([x, y]);  // "inf"/null: a gap
  }
  pts.sort((a, b) => a[0] - b[0]);
  return [pts.map(p => p[0]), pts.map(p => p[1])];
}

// ---------------------------------------------------------------- charts

function anomalyHook(fields) {
  // Shade the studied run's anomalies in the metrics this chart shows
  // (steps -> current x axis via that run's records).
  return (u) => {
    if (!studyData || !studyData.anomalies || !runs[studyData.run]) return;
    const axis = $("xaxis").value, [steps, xs] = series(runs[studyData.run], "step", axis);
    const toX = (s) => { const i = steps.findIndex(v => v >= s); return xs[i < 0 ? xs.length - 1 : i]; };
    const ctx = u.ctx;
    ctx.save();
    for (const a of studyData.anomalies.filter(a => fields.includes(a.metric))) {
      ctx.fillStyle = a.severity === "info" ? "rgba(255,160,0,0.10)" : "rgba(255,0,0,0.15)";
      const x0 = u.valToPos(toX(a.start), "x", true), x1 = u.valToPos(toX(a.end), "x", true);
      ctx.fillRect(x0 - 2, u.bbox.top, Math.max(x1 - x0, 0) + 4, u.bbox.height);
    }
    ctx.restore();
  };
}

// uPlot's default tick labels round to the tick spacing's decimals, which printed every
// learning-rate tick of a cosine schedule as "0.002": keep 4 significant digits instead.
function tick(v) {
  if (v == null) return "";
  const a = Math.abs(v);
  return (a >= 1e5 || (a > 0 && a < 1e-3)) ? v.toExponential(2) : String(+v.toPrecision(4));
}

function draw(title, tables, labels, dashes, colors, container, fields, extra = {}) {
  const log = $("logy").checked, axis = $("xaxis").value;
  if (log) tables = tables.map(([x, y]) => [x, y.map(v => v > 0 ? v : null)]);
  const data = tables.length ? uPlot.join(tables) : [[]];
  const key = [axis, log, labels.join("|"), colors.join("|")].join("/");  // study: same labels, other run
  const c = charts[title];
  if (c && c.key === key) { c.plot.setData(data); return; }
  if (c) c.plot.destroy();
  const opts = Object.assign({
    title, width: 600, height: 280,
    scales: {x: {time: false}, y: {distr: log ? 3 : 1}},
    axes: [{label: axis}, {values: (u, splits) => splits.map(tick),
           size: (u, values) => 24 + 7 * Math.max(4, ...(values || []).map(v => v.length))}],
    series: [{label: axis}].concat(labels.map((l, i) => ({
      label: l, stroke: colors[i], width: 1.5,
      dash: dashes[i] ? [6, 4] : undefined, spanGaps: true,
      points: {show: dashes[i]}}))),
    hooks: {draw: [anomalyHook(fields)]},
  }, extra);
  charts[title] = {plot: new uPlot(opts, data, container), key};
}

function chartBox(title) {
  let el = document.querySelector(`[data-chart="${title}"]`);
  if (!el) {
    el = document.createElement("div");
    el.dataset.chart = title;
    $("charts").appendChild(el);
  }
  return el;
}

function redrawCurves() {
  const axis = $("xaxis").value;
  for (const [title, fields] of CHARTS) {
    const tables = [], labels = [], dashes = [], colors = [];
    for (const id of Object.keys(runs)) {
      for (const [field, label, dashed] of fields) {
        const t = series(runs[id], field, axis);
        if (!t[0].length) continue;
        tables.push(t); labels.push(`${id} ${label}`); dashes.push(!!dashed); colors.push(runs[id].color);
      }
    }
    draw(title, tables, labels, dashes, colors, chartBox(title), fields.map(f => f[0]));
  }
}

// ---------------------------------------------------------------- runs table

function renderRuns(list, problems, sweeps) {
  const body = $("runs").tBodies[0];
  body.textContent = "";
  // a sweep's trials together, under one header row naming its best trial so far
  const order = [...list].sort((a, b) => (a.sweep || "").localeCompare(b.sweep || ""));
  const best = Object.fromEntries((sweeps || []).map(g => [g.sweep, g]));
  let group = null;
  for (const s of order) {
    if (s.sweep && s.sweep !== group) {
      const g = best[s.sweep], head = document.createElement("tr");
      cell(head, `sweep ${g.sweep}: ${g.trials.length} trials, ${g.pruned.length} pruned; best ` +
        (g.best ? `${g.best} (${g.metric} ${fmt(g.best_value)})` : "none yet") +
        (g.error ? ` (${g.error})` : "")).colSpan = 8;  // a damaged journal: why no best
      head.className = "sweep";
      body.appendChild(head);
    }
    group = s.sweep || null;
    const tr = document.createElement("tr");
    const bad = s.error || /stalled|missing|error|stopped|diverged/.test(s.state);
    const skipped = s.bad_lines && s.bad_lines.length ?  // the reader's warning, shown here too
      `; skipped corrupt history line${s.bad_lines.length > 1 ? "s" : ""} ${s.bad_lines.slice(0, 5).join(", ")}` : "";
    const mark = s.sweep && best[s.sweep] && best[s.sweep].best === s.id ? " ★" : "";
    cell(tr, s.id + mark);
    // a pruned trial's state says so (runstate); "pruned; " marks one that ran on since
    const pruned = s.pruned && !s.state.startsWith("pruned") ? "pruned; " : "";
    const note = s.history_note ? "; " + s.history_note : "";  // an empty or unreadable history
    cell(tr, pruned + s.state + (s.error ? ": " + s.error : "") + note + skipped, bad || note ? "bad" : "");
    cell(tr, s.step == null ? "-" : s.total_steps ? `${s.step} / ${s.total_steps}` : `${s.step} / ?`);
    cell(tr, s.percent == null ? "-" : s.percent.toFixed(1) + "%");
    cell(tr, s.tokens_per_s == null ? "-" : Math.round(s.tokens_per_s).toLocaleString());
    cell(tr, s.state === "running" ? dur(s.eta_seconds) : "-");
    cell(tr, s.last_checkpoint == null ? "-" : String(s.last_checkpoint));
    const run = runs[s.id];
    cell(tr, run ? String([...run.byStep.values()].filter(r => r.type === "train").length) : "0");
    tr.dataset.run = s.id;
    body.appendChild(tr);
  }
  $("problems").textContent = problems.join("; ");
  const sel = $("study-run"), keep = sel.value;
  const ids = list.filter(s => s.state !== "missing").map(s => s.id);
  if ([...sel.options].map(o => o.value).join() !== ids.join()) {
    sel.textContent = "";
    for (const id of ids) sel.add(new Option(id, id));
    if (ids.includes(keep)) sel.value = keep;
  }
}

// ---------------------------------------------------------------- study

let studyBusy = false, studyPending = false, studyAt = 0;
const STUDY_EVERY_MS = 10000;  // curve fits cost seconds: refit a live run at most this often

async function refreshStudy(force) {
  // Never awaited by the poll loop, so a slow fit does not hold back the curves.
  const id = $("study-run").value;
  if (!id || !runs[id]) return;
  if (studyBusy) { studyPending = studyPending || force; return; }  // rerun when this one ends
  if (!force && Date.now() - studyAt < STUDY_EVERY_MS) return;
  const q = new URLSearchParams({x: $("xaxis").value});
  if ($("study-metric").value) q.set("metric", $("study-metric").value);
  if ($("target").value.trim()) q.set("target", $("target").value.trim());
  const key = id + "?" + q + "@" + runs[id].offset;
  if (!force && key === studyKey) return;
  studyKey = key;
  studyBusy = true;
  try {
    studyData = Object.assign(await getJSON(`/api/runs/${encodeURIComponent(id)}/study?${q}`), {run: id});
  } catch (e) {
    studyData = null;
    $("prediction").textContent = "study: " + e.message;
    return;
  } finally {
    studyBusy = false;
    studyAt = Date.now();
    if (studyPending) { studyPending = false; setTimeout(() => refreshStudy(true), 0); }
  }
  renderStudy(id);
  const ck = await getJSON(`/api/runs/${encodeURIComponent(id)}/checkpoints`);
  renderCheckpoints(ck.checkpoints);
}

// A metric's name as zhbert.metrics gives it (the server sends each metric's info).
const label = (s, m) => (s.info && s.info[m] && s.info[m].label !== m) ? `${s.info[m].label} (${m})` : m;

function renderStudy(id) {
  const s = studyData, sel = $("study-metric");
  if ([...sel.options].map(o => o.value).join() !== s.metrics.join()) {
    sel.textContent = "";
    for (const m of s.metrics) sel.add(new Option(label(s, m), m));
  }
  sel.value = s.metric;
  const p = s.prediction;
  $("prediction").textContent = !p ? "Type a target and press predict." :
    p.error ? "prediction: " + p.error :
    `${p.message}` + (p.steps != null ? `  [steps ${fmt(p.steps, 4)}, 80% ${fmt(p.interval80[0], 4)}–${fmt(p.interval80[1], 4)}` +
      (p.hours ? `, ${fmt(p.hours.value, 3)} h` : "") + "]" : "");
  // the schedule-aware law: a run of N steps (its schedule stretched), not this run continued
  const o = s.outlook;
  // a note where the law does not answer for this metric (it forecasts accuracy only)
  if (o) $("prediction").textContent += "\nschedule-aware law: " + (o.error || o.note || o.summary);
  const c = s.correlation;
  $("correlation").textContent = c.error ? "correlation: " + c.error :
    `correlation with step: Pearson r ${fmt(c.pearson.statistic)} (r² ${fmt(c.r2)}), Spearman ${fmt(c.spearman.statistic)}, ` +
    `lag-1 autocorrelation ${fmt(c.rho1)}, effective n ${fmt(c.n_eff)} of ${c.n}, ` +
    `block-bootstrap r 95% CI ${c.pearson_block && c.pearson_block.ci95 ? c.pearson_block.ci95.map(v => fmt(v)).join("–") : "-"}`;
  const f = s.fit;
  $("fit").textContent = f.error ? "fit: " + f.error :
    `best fit ${f.best.model}: ${f.best.formula}; asymptote ${fmt(f.best.asymptote)}` +
    (f.best.asymptote_ci95 ? ` (95% ${f.best.asymptote_ci95.map(v => fmt(v)).join("–")})` : "") +
    `; AIC ${fmt(f.best.aic, 5)}; others: ${f.others.map(o => o.model + (o.ok ? " " + fmt(o.aic, 5) : " failed")).join(", ")}`;
  const ul = $("anomalies");
  ul.textContent = "";
  for (const a of s.anomalies) {
    const li = document.createElement("li");
    li.textContent = `[${a.severity}] ${a.kind} in ${a.metric}, steps ${a.start}–${a.end}: ${a.explanation}`;
    li.className = a.severity === "error" ? "bad" : a.severity === "warning" ? "warn" : "";
    ul.appendChild(li);
  }
  if (!s.anomalies.length) ul.textContent = "none detected";
  drawStudy(id);
  redrawCurves();  // re-shade anomalies
}

function drawStudy(id) {
  // The metric's points, the best fit extrapolated to 3x the last x, and its 95% band,
  // all in the run's colour.
  const s = studyData, pts = series(runs[id], s.metric, s.x), color = runs[id].color;
  const tables = [], labels = [], dashes = [];
  if (pts[0].length) { tables.push(pts); labels.push(label(s, s.metric)); dashes.push(true); }
  let extra = {};
  if (!s.fit.error) {
    const num = (a) => a.map(v => typeof v === "number" ? v : null);  // the server writes inf as "inf"
    tables.push([s.fit.grid, num(s.fit.y)], [s.fit.grid, num(s.fit.hi)], [s.fit.grid, num(s.fit.lo)]);
    labels.push(`fit ${s.fit.best.model}`, "95% band hi", "95% band lo");
    dashes.push(false, false, false);
    extra = {bands: [{series: [labels.length - 1, labels.length], fill: color + "26"}]};  // alpha 0.15
  }
  draw("study", tables, labels, dashes, labels.map(() => color), $("study-chart"), [s.metric], extra);
}

function renderCheckpoints(list) {
  const body = $("checkpoints").tBodies[0];
  body.textContent = "";
  for (const c of list) {
    const tr = document.createElement("tr"), e = c.eval || {};
    cell(tr, String(c.step)); cell(tr, c.on_disk ? "yes" : "no (deleted)");
    cell(tr, e.eval_mlm_acc == null ? "-" : pct(e.eval_mlm_acc) +
         (e.eval_mlm_acc_ci95 ? ` (${pct(e.eval_mlm_acc_ci95[0])}–${pct(e.eval_mlm_acc_ci95[1])})` : ""));
    cell(tr, fmt(e.eval_mlm_loss, 4)); cell(tr, pct(e.eval_nsp_acc));
    body.appendChild(tr);
  }
}

// ---------------------------------------------------------------- loop

async function poll() {
  try {
    const r = await getJSON("/api/runs");
    let grew = false;
    for (const s of r.runs) {
      if (s.state === "missing" || s.state === "error") continue;  // keep what we have, say so
      try { grew = (await pullHistory(s.id)) || grew; } catch (e) { s.error = e.message; }
    }
    renderRuns(r.runs, r.problems, r.sweeps);
    if (grew || !charts["loss"]) redrawCurves();
    refreshStudy(false);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("updated").textContent = "server unreachable: " + e.message;
  }
  setTimeout(poll, POLL_MS);
}

$("xaxis").onchange = () => { redrawCurves(); refreshStudy(true); };
$("logy").onchange = () => { redrawCurves(); if (studyData) drawStudy(studyData.run); };
$("predict").onclick = () => refreshStudy(true);
$("target").onkeydown = (e) => { if (e.key === "Enter") refreshStudy(true); };
$("study-run").onchange = () => { $("study-metric").textContent = ""; refreshStudy(true); };
$("study-metric").onchange = () => refreshStudy(true);
window.monitor = {runs, charts, get study() { return studyData; }};  // for tests and the console
poll();
