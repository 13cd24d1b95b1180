// gankit serve: the page's logic. Vanilla JS, no dependencies, nothing from the internet.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;

function status(text, isError) {
  const el = $("status");
  el.textContent = text || "";
  el.className = isError ? "error" : "";
}

// One image fed by an API endpoint: requests never pile up — while one is in flight, only the
// newest wanted query is remembered and fetched when it returns. After an image is shown,
// img.dataset.query holds the query it shows and img.dataset.state is "ready" (or "error").
function view(img, endpoint) {
  let inflight = false, wanted = null, shownUrl = null;
  async function pump() {
    if (inflight || wanted === null) return;
    const query = wanted;
    wanted = null;
    inflight = true;
    img.dataset.state = "loading";
    try {
      const res = await fetch(endpoint + "?" + query);
      if (!res.ok) throw new Error(await errorText(res));
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      await new Promise((ok, bad) => { img.onload = ok; img.onerror = () => bad(new Error("not an image")); img.src = url; });
      if (shownUrl) URL.revokeObjectURL(shownUrl);
      shownUrl = url;
      img.dataset.query = query;
      img.dataset.state = "ready";
      status("");
    } catch (e) {
      img.dataset.state = "error";
      status(e.message, true);
    } finally {
      inflight = false;
      pump();
    }
  }
  return (query) => { wanted = query; pump(); };
}

async function errorText(res) {
  try { return (await res.json()).error || res.statusText; } catch (e) { return res.status + " " + res.statusText; }
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

function params(obj) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  return q.toString();
}

function common() {
  return { "class": $("class").value, truncation: $("trunc-on").checked ? $("trunc").value : "" };
}

function setupGeneration() {
  const lim = info.limits;
  $("sample-panel").hidden = false;
  $("walk-panel").hidden = false;
  for (const id of ["seed", "walk-a", "walk-b", "mix-a", "mix-b"]) $(id).max = lim.seed[1];
  $("n").min = lim.n[0]; $("n").max = lim.n[1]; $("n").value = lim.n_default;
  // ψ as gankit sample takes it: 1 = none; 0 (the average image) only for a style generator
  $("trunc").min = info.style_layers > 0 ? lim.truncation[0] : Math.max(lim.truncation[0], Number($("trunc").step));
  $("trunc").max = lim.truncation[1];
  if (info.num_classes > 0) {
    $("class-label").hidden = false;
    const names = info.class_names || [];
    for (let k = 0; k < info.num_classes; k++) $("class").add(new Option(names[k] ? `${k} ${names[k]}` : String(k), String(k)));
  }
  if (info.kind === "vector") for (const id of ["samples", "walk"]) $(id).classList.add("plot");

  const showSamples = view($("samples"), "/api/sample");
  const showWalk = view($("walk"), "/api/walk");
  const drawSamples = () => showSamples(params({ seed: $("seed").value, n: $("n").value, ...common() }));
  const drawWalk = () => {
    const t = Number($("walk-t").value).toFixed(2);
    $("walk-t-out").textContent = t;
    showWalk(params({ a: $("walk-a").value, b: $("walk-b").value, t: t, ...common() }));
  };
  const later = debounce(() => { drawSamples(); drawWalk(); }, 150);
  for (const id of ["seed", "n", "class", "trunc"]) $(id).addEventListener("input", later);
  $("trunc-on").addEventListener("change", () => { $("trunc").disabled = !$("trunc-on").checked; later(); });
  $("trunc").addEventListener("input", () => { $("trunc-out").textContent = $("trunc").value; });
  $("trunc-on").addEventListener("change", () => {
    $("trunc-out").textContent = $("trunc-on").checked ? $("trunc").value : "off";
  });
  $("seed-random").addEventListener("click", () => {
    $("seed").value = Math.floor(Math.random() * 100000);
    later();
  });
  for (const id of ["walk-a", "walk-b"]) $(id).addEventListener("input", debounce(drawWalk, 150));
  $("walk-t").addEventListener("input", drawWalk);   // the slider: no debounce, requests coalesce in view()
  drawSamples();
  drawWalk();

  if (info.style_layers > 0) {
    $("mix-panel").hidden = false;
    $("mix-x").max = info.style_layers;
    const showMix = view($("mix"), "/api/mix");
    const drawMix = () => {
      $("mix-x-out").textContent = $("mix-x").value;
      showMix(params({ a: $("mix-a").value, b: $("mix-b").value, crossover: $("mix-x").value, ...common() }));
    };
    for (const id of ["mix-a", "mix-b", "mix-x", "class", "trunc"]) $(id).addEventListener("input", debounce(drawMix, 100));
    drawMix();
  } else {
    $("mix-note").hidden = false;
  }
}

function setupTranslation() {
  $("translate-panel").hidden = false;
  for (const d of info.directions) $("direction").add(new Option(d, d));
  $("direction-label").hidden = info.directions.length < 2;
  const [c, h, w] = info.sample_shape;
  $("upload-hint").textContent = `PNG, JPEG, BMP, WEBP or GIF up to ${(info.limits.upload_bytes / 1048576).toFixed(0)} MB; ` +
    `converted to ${c === 1 ? "grey" : "RGB"} and resized to ${w}×${h} for the model.`;
  const out = $("translated");
  async function go() {
    const file = $("upload").files[0];
    if (!file) return;
    $("input-preview").src = URL.createObjectURL(file);
    out.dataset.state = "loading";
    status("translating " + file.name + "…");
    try {
      const res = await fetch("/api/translate?" + params({ direction: $("direction").value }),
                              { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
      if (!res.ok) throw new Error(await errorText(res));
      const url = URL.createObjectURL(await res.blob());
      await new Promise((ok, bad) => { out.onload = ok; out.onerror = () => bad(new Error("not an image")); out.src = url; });
      out.dataset.query = file.name;
      out.dataset.state = "ready";
      status("");
    } catch (e) {
      out.dataset.state = "error";
      status(e.message, true);
    }
  }
  $("upload").addEventListener("change", go);
  $("direction").addEventListener("change", go);
}

async function main() {
  try {
    const res = await fetch("/api/info");
    if (!res.ok) throw new Error(await errorText(res));
    info = await res.json();
  } catch (e) {
    status("cannot describe the model: " + e.message, true);
    return;
  }
  document.title = "gankit · " + info.run;
  $("run").textContent = info.run;
  const what = info.task === "generation"
    ? `${info.kind === "vector" ? info.sample_shape[0] + "D" : info.sample_shape.join("×")} samples` +
      (info.num_classes ? `, ${info.num_classes} classes` : "") + `, z of ${info.z_dim} dimensions`
    : `translation ${info.sample_shape.join("×")} → ${info.target_shape.join("×")}`;
  $("meta").textContent = `${info.objective} on ${info.dataset}, step ${info.step}: ${what}`;
  if (info.task === "generation") setupGeneration(); else setupTranslation();
  document.body.dataset.ready = "1";
}

main();
