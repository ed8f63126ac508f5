"""The optional page: upload an image or draw a random test image, see the top-3 classes (it opens on a random one).

On by default locally, off on Cloud Run and Vertex AI unless PAGE_ENABLED=true (config/<env>.yaml
`service.page_enabled`). Random test images come from samples.npz in the model directory (the export step
writes a few labelled test images there); the service has no dataset access, so without that file the page
offers uploads only and says so. One self-contained HTML document: no external scripts, fonts or styles.
"""

from __future__ import annotations

import json

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fashion-MNIST classifier</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  .sub { color: #666; margin-top: 0; }
  .controls { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; margin: 1.2rem 0; }
  button { font-size: 1rem; padding: .5rem 1rem; cursor: pointer; }
  .row { display: flex; gap: 2rem; align-items: flex-start; }
  #preview { width: 168px; height: 168px; image-rendering: pixelated; background: #000; border: 1px solid #ccc; }
  #result { flex: 1; }
  .bar { background: #e8eef8; border-radius: 3px; margin: .35rem 0; position: relative; height: 1.8rem; }
  .fill { background: #4a7bd0; height: 100%; border-radius: 3px; }
  .bar span { position: absolute; left: .5rem; top: .3rem; font-weight: 600; }
  #error { color: #a00; white-space: pre-wrap; }
  .note { color: #666; font-size: .9rem; }
</style>
</head>
<body>
<h1>Fashion-MNIST classifier</h1>
<p class="sub">Model <b id="model-version">…</b>. The model expects a light garment on a dark background,
like the Fashion-MNIST images.</p>
<div class="controls">
  <button id="random" type="button">Random test image</button>
  <label>or upload a PNG/JPEG: <input id="file" type="file" accept="image/png,image/jpeg"></label>
</div>
<p id="samples-note" class="note"></p>
<div class="row">
  <img id="preview" alt="the image being classified" hidden>
  <div id="result" aria-live="polite"></div>
</div>
<p id="truth" class="note"></p>
<p id="notes" class="note"></p>
<p id="error" role="alert"></p>
<script>
const PREDICT_ROUTE = __PREDICT_ROUTE__;
const $ = (id) => document.getElementById(id);

function clearOutput() {
  $("result").textContent = ""; $("error").textContent = ""; $("notes").textContent = ""; $("truth").textContent = "";
}

function render(prediction, notes) {
  const result = $("result");
  result.textContent = "";
  const heading = document.createElement("div");
  heading.id = "top1";
  heading.textContent = "Prediction: " + prediction.label;
  result.appendChild(heading);
  for (const item of prediction.top_k) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.classId = item.class_id;
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = (100 * item.probability).toFixed(1) + "%";
    const text = document.createElement("span");
    text.textContent = item.label + " " + (100 * item.probability).toFixed(1) + "%";
    bar.append(fill, text);
    result.appendChild(bar);
  }
  $("notes").textContent = (notes || []).join("; ");
}

// Each image shown (the opening one, a random one, an upload) takes a new turn; a reply that comes back after a newer
// image was chosen is dropped, so a slow first prediction never overwrites what the visitor uploaded meanwhile.
let turn = 0;

async function classify(b64, mine) {
  const reply = await fetch(PREDICT_ROUTE, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({instances: [{b64: b64}], parameters: {top_k: 3}}),
  });
  const body = await reply.json();
  if (mine !== turn) { return; }
  if (!reply.ok) { $("error").textContent = "Error: " + body.detail; return; }
  render(body.predictions[0], body.metadata.notes);
}

function show(src) { $("preview").src = src; $("preview").hidden = false; }

async function randomImage() {
  const mine = ++turn;
  clearOutput();
  const reply = await fetch("v1/samples/random");
  const body = await reply.json();
  if (mine !== turn) { return; }
  if (!reply.ok) { $("error").textContent = body.detail; return; }
  show("data:image/png;base64," + body.b64);
  if (body.label) { $("truth").textContent = "True label: " + body.label + " (test image #" + body.index + ")"; }
  await classify(body.b64, mine);
}

$("random").addEventListener("click", randomImage);

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (!file) { return; }
  const mine = ++turn;
  clearOutput();
  const reader = new FileReader();
  reader.onload = async () => {
    if (mine !== turn) { return; }
    show(reader.result);
    await classify(reader.result.split(",", 2)[1], mine);
  };
  reader.readAsDataURL(file);
});

fetch("v1/model").then((r) => r.json()).then((m) => { $("model-version").textContent = m.model_version; });
// Start with a random test image and its prediction, so the page never shows an empty (broken) image.
fetch("v1/samples/random", {method: "HEAD"}).then((r) => {
  if (r.ok) { return randomImage(); }
  $("random").disabled = true;
  $("samples-note").textContent = r.status === 404
    ? "This model directory ships no sample images (samples.npz): upload one instead."
    : "No model is served yet: see the error below.";
  if (r.status !== 404) {
    return fetch("v1/samples/random").then((g) => g.json()).then((b) => { $("error").textContent = b.detail; });
  }
});
</script>
</body>
</html>
"""


def render_page(predict_route: str) -> str:
    return _PAGE.replace("__PREDICT_ROUTE__", json.dumps(predict_route))
