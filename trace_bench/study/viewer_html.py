"""The rater's packet: one self-contained HTML file (no server, no network, no external JS/CSS).

Layout of the file (what tests and tools may rely on):

* ``<meta name="study-key-sha256">`` and the same hash in the item list: the key this packet belongs to;
* ``<script type="application/json" id="study-items">``: ``{"format", "rater", "key_sha256",
  "criteria": [...], "windows": [{"name", "label", "width", "level"}], "items": [{"item_id",
  "position", "shape": [z, y, x], "spacing": [dz, dy, dx], "mime", "sprite": [columns, tile height,
  tile width]}]}`` in this rater's order;
* one ``<section class="study-item" data-item="V001">`` per item (all present in the DOM; the
  script shows one at a time): the images (axial canvas with a z slider, coronal and sagittal mid-plane
  canvases) beside the questions (one ``<fieldset class="criterion" data-criterion="...">`` each), the
  images kept in view while scoring;
* one ``<script type="application/octet-stream" id="px-<item>-<window>-<view>">`` per item, window and
  view (``axial``: the sprite sheet of the slices; ``coronal``, ``sagittal``: the mid-planes, superior
  up): base64 images of grey levels already windowed (see :mod:`.packet`).

The browser decodes the images itself (``<img>`` of a ``data:`` URL; WebP: Chrome/Edge 32+, Firefox
65+, Safari 14+) and draws axial slice ``z`` (rows y = anterior to posterior, columns x = patient right
to left, i.e. radiological view), the coronal plane at mid-y and the sagittal plane at mid-x with their
physical aspect ratio, and marks the axial position on both. The rater chooses the image size (kept in
the browser). The mouse wheel over the axial view moves as in the report's slice viewer (wheel down =
next slice). Keyboard: 1-9 and 0 (= 10) score the active question, r / g answer real / generated, [ and ]
move between questions, the left / right arrows between items, the up / down arrows (and Page Up / Down)
through the slices, w switches the window, + / - change the image size, ? shows the keys. Answers are
kept in ``localStorage`` under ``trace-bench-study:<key sha256>:<rater>`` and exported as a CSV download
with the columns ``rater,item_id,criterion,score,timestamp,key_sha256``; a previous export can be loaded
back (another browser, cleared storage).
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
header{position:sticky;top:0;z-index:2;background:#1c1c1c;padding:.4em 1em;border-bottom:1px solid #333}
header h1{font-size:1.05em;margin:0 0 .3em 0}
header .bar{display:flex;flex-wrap:wrap;gap:.5em;align-items:center}
button,select{background:#2a2a2a;color:#ddd;border:1px solid #555;border-radius:4px;padding:.25em .6em;cursor:pointer}
button.on{background:#3d5a80;border-color:#8ab}
#item-nav{display:flex;flex-wrap:wrap;gap:3px;padding:.4em 1em;background:#181818}
#item-nav button{min-width:2.4em;padding:.1em .3em}
#item-nav button.done{background:#2d5a3a}
#item-nav button.current{outline:2px solid #fc6}
main{padding:0 1em 2em 1em}
.item-body{display:grid;grid-template-columns:minmax(0,max-content) minmax(24em,1fr);gap:1.2em;align-items:start}
.views{position:sticky;top:var(--head,6em);display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start;
  max-height:calc(100vh - var(--head,6em));overflow:auto}
@media (max-width:900px){.item-body{grid-template-columns:1fr}.views{position:static;max-height:none}}
figure{margin:.3em 0}
figcaption{font-size:.85em;color:#aaa}
canvas{background:#000;display:block;image-rendering:auto}
.zslider{width:100%}
fieldset.criterion{border:1px solid #333;margin:.35em 0;padding:.25em .6em}
fieldset.criterion.active{border-color:#fc6;background:#1d1a12}
fieldset.criterion legend{font-weight:600}
fieldset.criterion legend .group{font-weight:400;color:#999;margin-right:.5em}
.scale label{display:inline-block;margin-right:.35em;white-space:nowrap}
.anchors{font-size:.8em;color:#aaa;margin-top:.2em}
.msg{color:#f96}
#status{color:#fc6}
.help{font-size:.85em;color:#aaa;max-width:80em;margin:.3em 0 0 0}
#keys{display:none;font-size:.85em;color:#ccc;margin:.3em 0 0 0}
#keys.on{display:block}
kbd{border:1px solid #666;border-radius:3px;padding:0 .3em;background:#222}
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
const SIZES = [256, 320, 400, 512, 640, 800];
const sizeSel = document.getElementById("size");
let current = 0, win = META.windows[0].name, active = 0;
let size = +(store && store.getItem(STORE + ":size")) || 400;
if (SIZES.indexOf(size) < 0) size = 400;
sizeSel.value = String(size);
const images = {};

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
function image(iid, w, view, mime) {
  const k = iid + "|" + w + "|" + view;
  if (!images[k]) {
    images[k] = new Promise(function (resolve, reject) {
      const img = new Image();
      img.onload = function () { resolve(img); };
      img.onerror = function () { reject(new Error("image not decodable")); };
      img.src = "data:" + mime + ";base64," + document.getElementById("px-" + iid + "-" + w + "-" + view).textContent.trim();
    });
  }
  return images[k];
}
function mark(canvas, row) {
  const g = canvas.getContext("2d"); g.fillStyle = "rgba(255,200,0,0.55)"; g.fillRect(0, row, canvas.width, 1);
}
async function render(i) {
  const it = items[i], sec = sections[i], nz = it.shape[0], ny = it.shape[1], nx = it.shape[2];
  const dz = it.spacing[0], dy = it.spacing[1], dx = it.spacing[2];
  let ax, co, sa;
  try {
    [ax, co, sa] = await Promise.all(["axial", "coronal", "sagittal"].map(function (v) { return image(it.item_id, win, v, it.mime); }));
  } catch (e) {
    sec.querySelector(".msg").textContent = "This browser cannot decode the images (" + e.message + "): use a current Chrome, Edge, Firefox or Safari.";
    return;
  }
  if (i !== current) return;
  const slider = sec.querySelector(".zslider"), z = +slider.value;
  const cols = it.sprite[0], th = it.sprite[1], tw = it.sprite[2];
  const s = size / Math.max(nx * dx, ny * dy);
  const cA = sec.querySelector("canvas.axial"), cC = sec.querySelector("canvas.coronal"), cS = sec.querySelector("canvas.sagittal");
  cA.width = nx; cA.height = ny; cC.width = nx; cC.height = nz; cS.width = ny; cS.height = nz;
  cA.style.width = (nx * dx * s) + "px"; cA.style.height = (ny * dy * s) + "px";
  cC.style.width = (nx * dx * s) + "px"; cC.style.height = (nz * dz * s) + "px";
  cS.style.width = (ny * dy * s) + "px"; cS.style.height = (nz * dz * s) + "px";
  cA.getContext("2d").drawImage(ax, (z % cols) * tw, Math.floor(z / cols) * th, nx, ny, 0, 0, nx, ny);
  cC.getContext("2d").drawImage(co, 0, 0); mark(cC, nz - 1 - z);
  cS.getContext("2d").drawImage(sa, 0, 0); mark(cS, nz - 1 - z);
  sec.querySelector(".zpos").textContent = "slice " + (z + 1) + " / " + nz + " (1 = feet end)";
  sec.dataset.rendered = win + ":" + z;
}
function fieldsets(i) { return Array.prototype.slice.call(sections[i].querySelectorAll("fieldset.criterion")); }
function setActive(k) {
  const fs = fieldsets(current);
  active = Math.max(0, Math.min(fs.length - 1, k));
  fs.forEach(function (f, j) { f.classList.toggle("active", j === active); });
}
function show(i) {
  current = Math.max(0, Math.min(items.length - 1, i));
  sections.forEach(function (s, j) { s.hidden = j !== current; });
  navButtons.forEach(function (b, j) { b.classList.toggle("current", j === current); });
  const a = answers[items[current].item_id] || {};
  const open = crits.findIndex(function (c) { return a[c.id] === undefined; });
  setActive(open < 0 ? 0 : open);
  render(current);
  window.scrollTo(0, 0);
}
function setWindow(name) {
  win = name;
  document.querySelectorAll("button.win").forEach(function (b) { b.classList.toggle("on", b.dataset.window === name); });
  render(current);
}
function setSize(v) {
  size = v; sizeSel.value = String(v);
  if (store) { try { store.setItem(STORE + ":size", String(v)); } catch (e) { /* size is not an answer */ } }
  render(current);
}
function step(i, d) {
  const slider = sections[i].querySelector(".zslider");
  slider.value = String(Math.max(0, Math.min(+slider.max, +slider.value + d)));
  render(i);
}
function answer(i, k, value) {
  const fs = fieldsets(i)[k];
  const inp = Array.prototype.slice.call(fs.querySelectorAll("input[type=radio]")).find(function (x) { return x.value === value; });
  if (!inp) return false;
  inp.checked = true;
  inp.dispatchEvent(new Event("change"));
  if (k + 1 < fieldsets(i).length) setActive(k + 1);
  return true;
}
sections.forEach(function (sec, i) {
  const iid = items[i].item_id, slider = sec.querySelector(".zslider");
  slider.addEventListener("input", function () { render(i); });
  sec.querySelector("canvas.axial").addEventListener("wheel", function (e) {
    e.preventDefault();
    step(i, e.deltaY > 0 ? 1 : -1);  // as the report's slice viewer: wheel down = next slice
  }, { passive: false });
  fieldsets(i).forEach(function (fs, k) { fs.addEventListener("click", function () { if (i === current) setActive(k); }); });
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
sizeSel.addEventListener("change", function () { setSize(+sizeSel.value); });
document.getElementById("keys-button").addEventListener("click", function () { document.getElementById("keys").classList.toggle("on"); });
document.addEventListener("keydown", function (e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t && (t.tagName === "SELECT" || (t.tagName === "INPUT" && t.type !== "radio" && t.type !== "range"))) return;
  const k = e.key, crit = crits[active];
  let done = true;
  if (k === "ArrowRight") show(current + 1);
  else if (k === "ArrowLeft") show(current - 1);
  else if (k === "ArrowDown" || k === "PageDown") step(current, 1);
  else if (k === "ArrowUp" || k === "PageUp") step(current, -1);
  else if (k === "]") setActive(active + 1);
  else if (k === "[") setActive(active - 1);
  else if (k === "w") { const n = META.windows.map(function (x) { return x.name; }); setWindow(n[(n.indexOf(win) + 1) % n.length]); }
  else if (k === "+" || k === "=") setSize(SIZES[Math.min(SIZES.length - 1, SIZES.indexOf(size) + 1)]);
  else if (k === "-") setSize(SIZES[Math.max(0, SIZES.indexOf(size) - 1)]);
  else if (k === "?") document.getElementById("keys").classList.toggle("on");
  else if (/^[0-9]$/.test(k) && crit && !crit.choices) done = answer(current, active, k === "0" ? "10" : k);
  else if (crit && crit.choices && k.length === 1) {
    const c = (crit.choices || []).filter(function (x) { return x[0].toLowerCase() === k.toLowerCase(); });
    done = c.length === 1 && answer(current, active, c[0]);
  } else done = false;
  if (done) e.preventDefault();
});
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
  statusEl.textContent = "Exported " + (rows.length - 1) + " answers" + (missing ? " (" + missing + " still missing)" : " (complete)") + ".";
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
    statusEl.textContent = "Loaded " + n + " answers" + (skipped ? " (" + skipped + " rows of another rater or study ignored)" : "") + ".";
  });
});
function headHeight() { document.documentElement.style.setProperty("--head", document.querySelector("header").offsetHeight + "px"); }
window.addEventListener("resize", headHeight);
headHeight();
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
        "items": [{"item_id": it.item_id, "position": i + 1, "shape": list(it.shape), "spacing": list(it.spacing),
                   "mime": it.mime, "sprite": list(it.sprite)} for i, it in enumerate(items)],
    }
    win_buttons = "".join(f'<button class="win" data-window="{html_attr(w)}">{html_text(_WINDOW_LABELS.get(w, w))} '
                          f'(W{wd:g} L{lv:g})</button>' for w, wd, lv in windows)
    sizes = "".join(f'<option value="{v}">{v} px</option>' for v in (256, 320, 400, 512, 640, 800))
    nav = "".join(f'<button title="{html_attr(it.item_id)}">{i + 1}</button>' for i, it in enumerate(items))
    sections = []
    for i, it in enumerate(items):
        nz = it.shape[0]
        crit = "".join(_criterion_html(it.item_id, c) for c in criteria)
        sections.append(
            f'<section class="study-item" id="item-{html_attr(it.item_id)}" data-item="{html_attr(it.item_id)}" '
            f'data-position="{i + 1}"{" hidden" if i else ""}>'
            f'<h2>Item {i + 1} of {n} <small>({html_text(it.item_id)})</small></h2><p class="msg"></p>'
            '<div class="item-body"><div class="views"><figure><canvas class="axial"></canvas>'
            f'<input class="zslider" type="range" min="0" max="{nz - 1}" value="{nz // 2}" step="1" '
            'aria-label="axial slice">'
            '<figcaption>Axial, <span class="zpos"></span>; slider, mouse wheel or the up / down keys</figcaption>'
            '</figure><figure><canvas class="coronal"></canvas><figcaption>Coronal (mid)</figcaption></figure>'
            '<figure><canvas class="sagittal"></canvas><figcaption>Sagittal (mid)</figcaption></figure></div>'
            f'<div class="questions"><form class="criteria" onsubmit="return false">{crit}</form>'
            '<p><button type="button" class="prev">&larr; Previous</button> '
            '<button type="button" class="next">Next &rarr;</button></p></div></div></section>')
    pixels = "".join(f'<script type="application/octet-stream" id="px-{html_attr(it.item_id)}-{html_attr(w)}-{v}">'
                     f"{it.data[w][v]}</script>\n"
                     for it in items for w, _, _ in windows for v in ("axial", "coronal", "sagittal"))
    keys = ("<kbd>1</kbd>-<kbd>9</kbd>, <kbd>0</kbd> (= 10) score the highlighted question and move to the next; "
            "<kbd>r</kbd> / <kbd>g</kbd> answer real / generated; <kbd>[</kbd> <kbd>]</kbd> previous / next question; "
            "<kbd>&larr;</kbd> <kbd>&rarr;</kbd> previous / next item; <kbd>&uarr;</kbd> <kbd>&darr;</kbd> "
            "(or the mouse wheel over the axial image) previous / next slice; <kbd>w</kbd> switch the window; "
            "<kbd>+</kbd> <kbd>-</kbd> image size; <kbd>?</kbd> show or hide this line.")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"study-key-sha256\" content=\"{html_attr(key_sha256)}\">"
        f"<title>Reader study: rater {html_text(rater)}</title><style>{_CSS}</style></head><body>\n"
        f"<header><h1>Reader study &mdash; rater {html_text(rater)}</h1><div class=\"bar\">{win_buttons}"
        f"<label>Image size <select id=\"size\">{sizes}</select></label>"
        "<button id=\"next-open\">Next incomplete item</button><button id=\"export\">Export answers (CSV)</button>"
        "<label>Load a previous export <input type=\"file\" id=\"import\" accept=\".csv,text/csv\"></label>"
        "<button id=\"keys-button\" title=\"keyboard shortcuts\">Keys (?)</button>"
        "<span id=\"progress\"></span> <span id=\"status\"></span></div>"
        "<p class=\"help\">Each item is one chest CT volume; some are real scans, some generated. Score every "
        "item on every question; the images stay beside the questions. Scroll the axial view with the slider, "
        "the mouse wheel or the arrow keys; switch the window with the presets above. Answers are saved in this "
        "browser as you go; when finished, click <b>Export answers (CSV)</b> and send the file back. Study key: "
        f"<code>{html_text(key_sha256[:16])}</code></p><p id=\"keys\">{keys}</p></header>\n"
        f"<nav id=\"item-nav\">{nav}</nav>\n<main>\n" + "\n".join(sections) + "\n</main>\n"
        f"<script type=\"application/json\" id=\"study-items\">{_json_script(meta)}</script>\n"
        + pixels + f"<script>{_JS}</script>\n</body></html>\n"
    )
