"""The upload page: one HTML file, its CSS and script inline (no CDN, works
offline).  Without JavaScript it is a plain form posting to ``/`` that the
server answers with the same page and the result; with JavaScript the photo
is previewed, dropped files are taken, and results come from ``/predict``."""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · aslnet</title>
<style>
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:1rem;
 color:#1d2330;background:#f4f5f8;line-height:1.4}
main{max-width:34rem;margin:0 auto}
h1{font-size:1.35rem;margin:.2rem 0}
.sub{color:#5b6374;margin:0 0 1rem;font-size:.95rem}
#drop{display:block;border:2px dashed #9aa3b5;border-radius:.9rem;padding:1rem;
 text-align:center;background:#fff;cursor:pointer}
#drop.over{border-color:#1f8a4c;background:#eefaf2}
#drop input{max-width:100%}
#preview{display:block;max-width:100%;max-height:15rem;margin:0 auto .6rem;border-radius:.5rem}
#preview[hidden]{display:none}
.buttons{display:flex;gap:.6rem;flex-wrap:wrap;margin-top:.8rem}
.btn{flex:1 1 9rem;font:inherit;font-weight:600;padding:.7rem 1rem;border-radius:.6rem;
 border:1px solid #9aa3b5;background:#fff;color:#1d2330;text-align:center;cursor:pointer}
.btn.primary{background:#1f8a4c;border-color:#1f8a4c;color:#fff}
.btn input{display:none}
.error{margin-top:1rem;background:#fdecec;color:#8a1111;padding:.8rem;border-radius:.6rem}
#result{margin-top:1.2rem;background:#fff;border-radius:.9rem;padding:1rem}
#result .label{color:#5b6374;font-size:.9rem}
#top-class{font-size:3.2rem;font-weight:800;line-height:1.1;word-break:break-word}
#top-prob{color:#1f8a4c;font-weight:600;margin-bottom:.8rem}
.bar{display:flex;align-items:center;gap:.5rem;margin:.25rem 0;font-size:.95rem}
.bar .name{flex:0 0 5.5rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar .track{display:block;flex:1;background:#e4e7ee;border-radius:.3rem;height:.9rem;overflow:hidden}
.bar .fill{display:block;background:#1f8a4c;height:100%;min-width:2px}
.bar .pct{flex:0 0 3.6rem;text-align:right;font-variant-numeric:tabular-nums}
.busy{opacity:.55}
footer{margin-top:1.5rem;color:#8a91a0;font-size:.8rem}
</style>
</head>
<body>
<main>
<h1>{{ title }}</h1>
<p class="sub">{{ classes|length }} classes · input {{ size[0] }}&times;{{ size[1] }} pixels</p>
<form id="form" method="post" action="/" enctype="multipart/form-data">
  <label id="drop" for="file">
    <img id="preview" alt="the photo to classify" hidden>
    <span id="hint">Drop a photo here, or choose one:</span><br>
    <input id="file" type="file" name="image" accept="image/*">
  </label>
  <div class="buttons">
    <label class="btn" for="camera">Take a photo
      <input id="camera" type="file" name="image" accept="image/*" capture="environment">
    </label>
    <button class="btn primary" id="submit" type="submit">Classify</button>
  </div>
</form>
<div id="error" class="error" role="alert"{% if not error %} hidden{% endif %}>{{ error or "" }}</div>
<section id="result" aria-live="polite"{% if not result %} hidden{% endif %}>
  <div class="label">Looks like</div>
  <div id="top-class">{{ result["class"] if result else "" }}</div>
  <div id="top-prob">{% if result %}{{ "%.1f"|format(100 * result["probability"]) }}% sure{% endif %}</div>
  <div id="bars">
  {%- if result %}{% for r in result["top"] %}
    <div class="bar"><span class="name">{{ r["class"] }}</span><span class="track"><span class="fill" style="width:{{ "%.1f"|format(100 * r["probability"]) }}%"></span></span><span class="pct">{{ "%.1f"|format(100 * r["probability"]) }}%</span></div>
  {%- endfor %}{% endif %}
  </div>
</section>
<footer>Served by aslnet {{ version }} · <a href="/model">model</a> · <a href="/openapi.json">API</a></footer>
</main>
<script>
(function () {
  "use strict";
  var form = document.getElementById("form"), drop = document.getElementById("drop"),
      file = document.getElementById("file"), camera = document.getElementById("camera"),
      preview = document.getElementById("preview"), errorBox = document.getElementById("error"),
      result = document.getElementById("result"), chosen = null, TOP = {{ top_k }};
  var PLAIN = {
    400: "That file is not a picture we can read. Try a JPEG or PNG photo.",
    413: "That picture is too big.",
    415: "That kind of file is not supported. Send a JPEG, PNG, WebP, GIF, BMP or TIFF photo.",
    429: "The server is busy right now. Please try again in a moment.",
    503: "The server is busy right now. Please try again in a moment."
  };
  function showError(text) {
    errorBox.textContent = text; errorBox.hidden = false; result.hidden = true;
  }
  function pct(p) { return (100 * p).toFixed(1) + "%"; }
  function render(out) {
    errorBox.hidden = true;
    document.getElementById("top-class").textContent = out["class"];
    document.getElementById("top-prob").textContent = pct(out.probability) + " sure";
    var bars = document.getElementById("bars");
    bars.textContent = "";
    out.top.slice(0, TOP).forEach(function (r) {
      var row = document.createElement("div"), name = document.createElement("span"),
          track = document.createElement("span"), fill = document.createElement("span"),
          value = document.createElement("span");
      row.className = "bar"; name.className = "name"; track.className = "track";
      fill.className = "fill"; value.className = "pct";
      name.textContent = r["class"]; name.title = r["class"];
      fill.style.width = pct(r.probability); value.textContent = pct(r.probability);
      track.appendChild(fill); row.appendChild(name); row.appendChild(track);
      row.appendChild(value); bars.appendChild(row);
    });
    result.hidden = false;
  }
  function choose(f) {
    if (!f) return;
    chosen = f;
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(f); preview.hidden = false;
    classify();
  }
  function classify() {
    if (!chosen) { showError("Choose a photo first."); return; }
    var body = new FormData();
    body.append("image", chosen, chosen.name || "photo.jpg");
    form.classList.add("busy");
    fetch("predict?top=" + TOP, {method: "POST", body: body}).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (out) {
        if (!r.ok) {
          var plain = PLAIN[r.status] || "Something went wrong on the server.";
          showError(out.error ? plain + " (" + out.error + ")" : plain);
        } else render(out);
      });
    }).catch(function () {
      showError("Could not reach the server. Check your connection and try again.");
    }).then(function () { form.classList.remove("busy"); });
  }
  file.addEventListener("change", function () { choose(file.files[0]); });
  camera.addEventListener("change", function () { choose(camera.files[0]); });
  form.addEventListener("submit", function (e) { e.preventDefault(); classify(); });
  ["dragenter", "dragover"].forEach(function (n) {
    drop.addEventListener(n, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (n) {
    drop.addEventListener(n, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) {
    if (e.dataTransfer && e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
  });
})();
</script>
</body>
</html>
"""
