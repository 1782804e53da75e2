"""The rater's packet: one self-contained HTML file (no server, no network, no external JS/CSS).

Layout of the file (what tests and tools may rely on):

* ``<meta name="study-key-sha256">`` and the same hash in the item list: the key this packet belongs to;
* ``<script type="application/json" id="study-items">``: ``{"format", "rater", "key_sha256",
  "criteria": [...], "windows": [{"name", "label", "width", "level"}], "items": [{"item_id",
  "position", "shape": [z, y, x], "spacing": [dz, dy, dx]}]}`` in this rater's order;
* one ``<section class="study-item" data-item="V001">`` per item (all present in the DOM; the
  script shows one at a time) with an axial canvas, a z slider, coronal and sagittal mid-plane
  canvases and one ``<fieldset class="criterion" data-criterion="...">`` per question;
* one ``<script type="application/octet-stream" id="px-<item>-<window>">`` per item and window:
  base64(zlib(uint8 (z, y, x))) grey levels, already windowed (see :mod:`.packet`).

The browser inflates the pixels with ``DecompressionStream('deflate')`` (Chrome/Edge 80+, Firefox
113+, Safari 16.4+), draws axial slice ``z`` (rows y = anterior to posterior, columns x = patient
right to left, i.e. radiological view), the coronal plane at mid-y and the sagittal plane at mid-x
(head up) with their physical aspect ratio, and marks the axial position on both. Answers are kept
in ``localStorage`` under ``trace-bench-study:<key sha256>:<rater>`` and exported as a CSV
download with the columns ``rater,item_id,criterion,score,timestamp,key_sha256``; a previous
export can be loaded back (another browser, cleared storage).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..results.escape import html_attr, html_text, json_script
from .criteria import Criterion

PACKET_FORMAT = "trace-bench-study-packet/1"
ANSWER_COLUMNS = ("rater", "item_id", "criterion", "score", "timestamp", "key_sha256")
_WINDOW_LABELS = {"lung": "Lung", "mediastinum": "Mediastinum"}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#111;color:#ddd}
header{position:sticky;top:0;z-index:2;background:#1c1c1c;padding:.5em 1em;border-bottom:1px solid #333}
header h1{font-size:1.1em;margin:0 0 .3em 0}
header .bar{display:flex;flex-wrap:wrap;gap:.5em;align-items:center}
button{background:#2a2a2a;color:#ddd;border:1px solid #555;border-radius:4px;padding:.25em .6em;cursor:pointer}
button.on{background:#3d5a80;border-color:#8ab}
#item-nav{display:flex;flex-wrap:wrap;gap:3px;padding:.4em 1em;background:#181818}
#item-nav button{min-width:2.4em;padding:.1em .3em}
#item-nav button.done{background:#2d5a3a}
#item-nav button.current{outline:2px solid #fc6}
main{padding:0 1em 2em 1em}
.views{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:.5em 0}
figcaption{font-size:.85em;color:#aaa}
canvas{background:#000;display:block}
.zslider{width:100%}
fieldset.criterion{border:1px solid #333;margin:.4em 0;padding:.3em .6em}
fieldset.criterion legend{font-weight:600}
fieldset.criterion legend .group{font-weight:400;color:#999;margin-right:.5em}
.scale label{display:inline-block;margin-right:.35em;white-space:nowrap}
.anchors{font-size:.8em;color:#aaa;margin-top:.2em}
.msg{color:#f96}
#status{color:#fc6}
.help{font-size:.85em;color:#aaa;max-width:70em}
"""

_JS = r"""
(function () {
"use strict";
const META = JSON.parse(document.getElementById("study-items").textContent);
const STORE = "trace-bench-study:" + META.key_sha256 + ":" + META.rater;
const statusEl = document.getElementById("status");
let store = null;
try { store = window.localStorage; store.setItem(STORE + ":probe", "1"); store.removeItem(STORE + ":probe"); }
catch (e) { store = null; }
let answers = {};
if (store) { try { answers = JSON.parse(store.getItem(STORE) || "{}") || {}; } catch (e) { answers = {}; } }
if (!store) { statusEl.textContent = "Browser storage unavailable: answers live in this tab only; export the CSV before closing."; }
const items = META.items, crits = META.criteria;
const sections = items.map(function (it) { return document.getElementById("item-" + it.item_id); });
const navButtons = Array.prototype.slice.call(document.querySelectorAll("#item-nav button"));
let current = 0, win = META.windows[0].name;
const cache = {};

function complete(iid) { const a = answers[iid] || {}; return crits.every(function (c) { return a[c.id] !== undefined; }); }
function updateProgress() {
  let done = 0;
  items.forEach(function (it, i) { const ok = complete(it.item_id); if (ok) done++; navButtons[i].classList.toggle("done", ok); });
  document.getElementById("progress").textContent = done + " / " + items.length + " items complete";
}
function save() {
  if (store) { try { store.setItem(STORE, JSON.stringify(answers)); } catch (e) { statusEl.textContent = "Could not save: " + e; } }
  updateProgress();
}
async function inflate(b64) {
  const bin = Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
async function pixels(iid, w) {
  const k = iid + "|" + w;
  if (cache[k]) return cache[k];
  const v = await inflate(document.getElementById("px-" + iid + "-" + w).textContent.trim());
  Object.keys(cache).forEach(function (kk) { if (kk.split("|")[0] !== iid) delete cache[kk]; });
  cache[k] = v;
  return v;
}
function draw(canvas, w, h, get, mark) {
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h), d = img.data;
  for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) {
    const g = get(r, c), o = (r * w + c) * 4; d[o] = g; d[o + 1] = g; d[o + 2] = g; d[o + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  if (mark !== undefined) { ctx.fillStyle = "rgba(255,200,0,0.55)"; ctx.fillRect(0, mark, w, 1); }
}
async function render(i) {
  const it = items[i], sec = sections[i], nz = it.shape[0], ny = it.shape[1], nx = it.shape[2];
  const dz = it.spacing[0], dy = it.spacing[1], dx = it.spacing[2];
  let v;
  try { v = await pixels(it.item_id, win); }
  catch (e) { sec.querySelector(".msg").textContent = "This browser cannot decode the images (" + e + "): use a current Chrome, Edge, Firefox or Safari."; return; }
  if (i !== current) return;
  const slider = sec.querySelector(".zslider"), z = +slider.value, my = ny >> 1, mx = nx >> 1;
  const s = 300 / Math.max(nx * dx, ny * dy);
  const ax = sec.querySelector("canvas.axial"), co = sec.querySelector("canvas.coronal"), sa = sec.querySelector("canvas.sagittal");
  ax.style.width = (nx * dx * s) + "px"; ax.style.height = (ny * dy * s) + "px";
  co.style.width = (nx * dx * s) + "px"; co.style.height = (nz * dz * s) + "px";
  sa.style.width = (ny * dy * s) + "px"; sa.style.height = (nz * dz * s) + "px";
  draw(ax, nx, ny, function (r, c) { return v[(z * ny + r) * nx + c]; });
  draw(co, nx, nz, function (r, c) { return v[((nz - 1 - r) * ny + my) * nx + c]; }, nz - 1 - z);
  draw(sa, ny, nz, function (r, c) { return v[((nz - 1 - r) * ny + c) * nx + mx]; }, nz - 1 - z);
  sec.querySelector(".zpos").textContent = "slice " + (z + 1) + " / " + nz + " (1 = feet end)";
  sec.dataset.rendered = win + ":" + z;
}
function show(i) {
  current = Math.max(0, Math.min(items.length - 1, i));
  sections.forEach(function (s, j) { s.hidden = j !== current; });
  navButtons.forEach(function (b, j) { b.classList.toggle("current", j === current); });
  render(current);
  window.scrollTo(0, 0);
}
function setWindow(name) {
  win = name;
  document.querySelectorAll("button.win").forEach(function (b) { b.classList.toggle("on", b.dataset.window === name); });
  render(current);
}
sections.forEach(function (sec, i) {
  const iid = items[i].item_id, slider = sec.querySelector(".zslider");
  slider.addEventListener("input", function () { render(i); });
  sec.querySelector("canvas.axial").addEventListener("wheel", function (e) {
    e.preventDefault();
    slider.value = String(Math.max(0, Math.min(+slider.max, +slider.value + (e.deltaY > 0 ? -1 : 1))));
    render(i);
  }, { passive: false });
  sec.querySelectorAll("input[type=radio]").forEach(function (inp) {
    const crit = inp.closest("fieldset").dataset.criterion, a = (answers[iid] || {})[crit];
    if (a && String(a.v) === inp.value) inp.checked = true;
    inp.addEventListener("change", function () {
      (answers[iid] = answers[iid] || {})[crit] = { v: inp.value, t: new Date().toISOString() };
      save();
    });
  });
  sec.querySelector("button.prev").addEventListener("click", function () { show(i - 1); });
  sec.querySelector("button.next").addEventListener("click", function () { show(i + 1); });
});
navButtons.forEach(function (b, i) { b.addEventListener("click", function () { show(i); }); });
document.querySelectorAll("button.win").forEach(function (b) { b.addEventListener("click", function () { setWindow(b.dataset.window); }); });
document.getElementById("next-open").addEventListener("click", function () {
  for (let k = 1; k <= items.length; k++) { const j = (current + k) % items.length; if (!complete(items[j].item_id)) { show(j); return; } }
  statusEl.textContent = "Every item is complete: export the CSV.";
});
// spreadsheet-safe cells, exactly as trace_bench.results.escape.csv_cell / csv_value
const FORMULA = /^[=+\-@\t\r]/, NEGNUM = /^-([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/;
function quoted(s) { return FORMULA.test(s) ? !NEGNUM.test(s) : (s.length > 1 && s[0] === "'" && (s[1] === "'" || FORMULA.test(s.slice(1)))); }
function uncell(s) { return (s.length > 1 && s[0] === "'" && quoted(s.slice(1))) ? s.slice(1) : s; }
function field(s) { s = String(s); if (quoted(s)) s = "'" + s; return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
document.getElementById("export").addEventListener("click", function () {
  const rows = [META.answer_columns];
  let missing = 0;
  items.forEach(function (it) { crits.forEach(function (c) {
    const a = (answers[it.item_id] || {})[c.id];
    if (a) rows.push([META.rater, it.item_id, c.id, a.v, a.t, META.key_sha256]); else missing++;
  }); });
  const text = rows.map(function (r) { return r.map(field).join(","); }).join("\r\n") + "\r\n";
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  a.download = "answers-" + META.rater + ".csv";
  document.body.appendChild(a); a.click();
  setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  statusEl.textContent = "Exported " + (rows.length - 1) + " answers" + (missing ? " (" + missing + " still missing)." : " (complete).");
});
function parseCsv(text) {
  const rows = []; let row = [], f = "", q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) { if (ch === '"') { if (text[i + 1] === '"') { f += '"'; i++; } else q = false; } else f += ch; }
    else if (ch === '"') q = true;
    else if (ch === ",") { row.push(f); f = ""; }
    else if (ch === "\n" || ch === "\r") { if (ch === "\r" && text[i + 1] === "\n") i++; row.push(f); rows.push(row); row = []; f = ""; }
    else f += ch;
  }
  if (f !== "" || row.length) { row.push(f); rows.push(row); }
  return rows;
}
document.getElementById("import").addEventListener("change", function (e) {
  const file = e.target.files[0]; if (!file) return;
  file.text().then(function (text) {
    const rows = parseCsv(text.replace(/^\ufeff/, "")).map(function (r) { return r.map(uncell); }), head = rows.shift() || [];
    const col = {}; head.forEach(function (h, i) { col[h] = i; });
    let n = 0, skipped = 0;
    rows.forEach(function (r) {
      if (r.length < head.length) return;
      if (r[col.key_sha256] !== META.key_sha256 || r[col.rater] !== META.rater) { skipped++; return; }
      (answers[r[col.item_id]] = answers[r[col.item_id]] || {})[r[col.criterion]] = { v: r[col.score], t: r[col.timestamp] };
      n++;
    });
    save();
    sections.forEach(function (sec, i) { sec.querySelectorAll("input[type=radio]").forEach(function (inp) {
      const a = (answers[items[i].item_id] || {})[inp.closest("fieldset").dataset.criterion];
      inp.checked = !!a && String(a.v) === inp.value;
    }); });
    statusEl.textContent = "Loaded " + n + " answers" + (skipped ? " (" + skipped + " rows of another rater or study ignored)." : ".");
  });
});
updateProgress();
setWindow(win);
show(0);
document.body.dataset.ready = "1";
})();
"""


def _json_script(obj: Any) -> str:
    """The packet's item list inside ``<script>`` (sorted keys, compact; ``< > &`` escaped)."""
    return json_script(obj, sort_keys=True, separators=(",", ":"))


def _criterion_html(item_id: str, c: Criterion) -> str:
    name = html_attr(f"{item_id}|{c.id}")
    values = list(c.choices) if c.kind == "choice" else [str(v) for v in range(c.low, c.high + 1)]
    radios = "".join(f'<label><input type="radio" name="{name}" value="{html_attr(v)}"> {html_text(v)}</label>'
                     for v in values)
    group = f'<span class="group">{html_text(c.group)}</span>' if c.group else ""
    anchors = ""
    if c.kind == "scale" and c.anchors:
        anchors = ('<div class="anchors">'
                   + " &middot; ".join(f"<b>{k}</b> = {html_text(t)}" for k, t in sorted(c.anchors.items())) + "</div>")
    return (f'<fieldset class="criterion" data-criterion="{html_attr(c.id)}">'
            f'<legend>{group}{html_text(c.label)}</legend>'
            f'<div class="scale">{radios}</div>{anchors}</fieldset>')


def render_packet(*, rater: str, key_sha256: str, criteria: Sequence[Criterion], items: Iterable[Any],
                  windows: Sequence[tuple[str, float, float]]) -> str:
    """The packet's HTML. ``items``: :class:`~trace_bench.study.packet.EncodedItem` in this rater's
    order. Nothing but opaque item ids, pixels, criteria and the key hash goes in."""
    items = list(items)
    n = len(items)
    meta = {
        "format": PACKET_FORMAT, "rater": rater, "key_sha256": key_sha256, "answer_columns": list(ANSWER_COLUMNS),
        "criteria": [c.to_json() for c in criteria],
        "windows": [{"name": w, "label": _WINDOW_LABELS.get(w, w), "width": wd, "level": lv} for w, wd, lv in windows],
        "items": [{"item_id": it.item_id, "position": i + 1, "shape": list(it.shape), "spacing": list(it.spacing)}
                  for i, it in enumerate(items)],
    }
    win_buttons = "".join(f'<button class="win" data-window="{html_attr(w)}">{html_text(_WINDOW_LABELS.get(w, w))} (W{wd:g} L{lv:g})</button>'
                          for w, wd, lv in windows)
    nav = "".join(f'<button title="{html_attr(it.item_id)}">{i + 1}</button>' for i, it in enumerate(items))
    sections = []
    for i, it in enumerate(items):
        nz = it.shape[0]
        crit = "".join(_criterion_html(it.item_id, c) for c in criteria)
        sections.append(
            f'<section class="study-item" id="item-{html_attr(it.item_id)}" data-item="{html_attr(it.item_id)}" data-position="{i + 1}"'
            f'{" hidden" if i else ""}>'
            f'<h2>Item {i + 1} of {n} <small>({html_text(it.item_id)})</small></h2><p class="msg"></p>'
            f'<div class="views"><figure><canvas class="axial"></canvas>'
            f'<input class="zslider" type="range" min="0" max="{nz - 1}" value="{nz // 2}" step="1">'
            f'<figcaption>Axial, <span class="zpos"></span>; slider or mouse wheel</figcaption></figure>'
            f'<figure><canvas class="coronal"></canvas><figcaption>Coronal (mid)</figcaption></figure>'
            f'<figure><canvas class="sagittal"></canvas><figcaption>Sagittal (mid)</figcaption></figure></div>'
            f'<form class="criteria" onsubmit="return false">{crit}</form>'
            f'<p><button type="button" class="prev">&larr; Previous</button> '
            f'<button type="button" class="next">Next &rarr;</button></p></section>')
    pixels = "".join(f'<script type="application/octet-stream" id="px-{html_attr(it.item_id)}-{html_attr(w)}">{it.data[w]}</script>\n'
                     for it in items for w, _, _ in windows)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"study-key-sha256\" content=\"{html_attr(key_sha256)}\">"
        f"<title>Reader study: rater {html_text(rater)}</title><style>{_CSS}</style></head><body>\n"
        f"<header><h1>Reader study &mdash; rater {html_text(rater)}</h1><div class=\"bar\">{win_buttons}"
        "<button id=\"next-open\">Next incomplete item</button><button id=\"export\">Export answers (CSV)</button>"
        "<label>Load a previous export <input type=\"file\" id=\"import\" accept=\".csv,text/csv\"></label>"
        "<span id=\"progress\"></span> <span id=\"status\"></span></div>"
        "<p class=\"help\">Each item is one chest CT volume; some are real scans, some generated. Score every "
        "item on every question. Scroll the axial view with the slider or the mouse wheel; switch the window "
        "with the presets above. Answers are saved in this browser as you go; when finished, click "
        "<b>Export answers (CSV)</b> and send the file back. Study key: "
        f"<code>{html_text(key_sha256[:16])}</code></p></header>\n"
        f"<nav id=\"item-nav\">{nav}</nav>\n<main>\n" + "\n".join(sections) + "\n</main>\n"
        f"<script type=\"application/json\" id=\"study-items\">{_json_script(meta)}</script>\n"
        + pixels + f"<script>{_JS}</script>\n</body></html>\n"
    )
