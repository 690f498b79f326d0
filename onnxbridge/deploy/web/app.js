// onnxbridge web page: builds a form from manifest.json; onnxruntime-web runs model.onnx in a
// Web Worker (worker.js), so the page never freezes. Plain ES modules, no build step: read them,
// change them, serve the folder with any static server (onnxbridge.serve_web adds the headers
// that give WebAssembly several threads).

const $ = (selector) => document.querySelector(selector);
const TYPED = {
  float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, int8: Int8Array, bool: Uint8Array,
};

function showError(message) {
  $("#error").textContent = message;
  $("#status").textContent = "Something went wrong; see the message below.";
}

function plain(err) {
  const text = (err && err.message) ? err.message : String(err);
  return text.replace(/^Error: /, "");
}

// -- the worker ------------------------------------------------------------------------------
let worker, nextId = 0;
const pending = new Map();

function call(message, transfer = []) {
  const id = ++nextId;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ ...message, id }, transfer);
  });
}

function startWorker(manifest, onProgress) {
  worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
  const base = new URL(manifest.runtime.base, document.baseURI).href; // absolute: the worker resolves against itself
  return new Promise((resolve, reject) => {
    worker.onmessage = (event) => {
      const m = event.data;
      if (m.type === "progress") onProgress(m.loaded, m.total);
      else if (m.type === "ready") resolve(m);
      else if (m.type === "failed" && m.stage === "load") reject(new Error(m.message));
      else if (m.id && pending.has(m.id)) {
        const { resolve: done, reject: fail } = pending.get(m.id);
        pending.delete(m.id);
        if (m.type === "failed") fail(new Error(m.message)); else done(m);
      }
    };
    worker.onerror = (event) => reject(new Error(event.message || "the worker failed to start"));
    const backend = new URLSearchParams(location.search).get("backend") || manifest.runtime.backend || "wasm";
    worker.postMessage({ type: "load", manifest, base, modelUrl: new URL(manifest.model, document.baseURI).href, backend });
  });
}

function dimsOf(spec) {
  return spec.shape.map((dim, axis) => {
    if (typeof dim === "number") return dim;
    const field = document.getElementById(`dim-${spec.name}-${axis}`);
    return Math.max(1, parseInt(field.value, 10) || 1);
  });
}

function randomValues(dtype, count) {
  const values = [];
  for (let i = 0; i < count; i++) {
    if (dtype.startsWith("float")) values.push(Math.random());
    else if (dtype === "bool") values.push(Math.random() < 0.5 ? 1 : 0);
    else values.push(Math.floor(Math.random() * 2));
  }
  return values;
}

function tensorFrom(spec, values, dims) {
  const count = dims.reduce((a, b) => a * b, 1);
  if (values.length !== count) {
    throw new Error(`Input '${spec.name}' needs ${count} values for shape [${dims}], but got ${values.length}.`);
  }
  const Typed = TYPED[spec.dtype];
  const data = spec.dtype === "int64" ? Typed.from(values, (v) => BigInt(Math.round(v))) : Typed.from(values);
  return { type: spec.dtype, data, dims };
}

// -- image inputs: a drawing canvas and an upload, resized to the model's size -----------------
function imageWidget(spec, fieldset) {
  const image = spec.image;
  const wrap = document.createElement("div");
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 224;
  canvas.id = `canvas-${spec.name}`;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  let drawing = false;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => { drawing = true; ctx.beginPath(); ctx.moveTo(...point(event)); });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.strokeStyle = "#fff";
    ctx.lineTo(...point(event)); ctx.stroke();
  });
  const stop = () => { if (drawing) { drawing = false; runModel(); } };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointerleave", stop);
  const clear = document.createElement("button");
  clear.type = "button"; clear.textContent = "Clear";
  clear.addEventListener("click", () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); });
  const upload = document.createElement("input");
  upload.type = "file"; upload.accept = "image/*"; upload.id = `upload-${spec.name}`;
  const show = async (file) => {
    const bitmap = await createImageBitmap(file);
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    document.getElementById(`mode-${spec.name}`).value = "image";
    runModel();
  };
  upload.addEventListener("change", () => show(upload.files[0]));
  canvas.addEventListener("dragover", (event) => event.preventDefault());
  canvas.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file && file.type.startsWith("image/")) show(file);
  });
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = `Draw, upload or drop an image here; it is resized to ${image.width}x${image.height}, ` +
    `${image.channels === 1 ? "grey" : "RGB"}, (pixel * ${image.scale.toPrecision(3)} - mean) / std, ${image.layout}.`;
  wrap.append(canvas, document.createElement("br"), clear, upload, note);
  fieldset.append(wrap);
}

function imageValues(spec) {
  const image = spec.image;
  const source = document.getElementById(`canvas-${spec.name}`);
  const small = document.createElement("canvas");
  small.width = image.width; small.height = image.height;
  const ctx = small.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, image.width, image.height);
  const pixels = ctx.getImageData(0, 0, image.width, image.height).data;
  const plane = image.width * image.height;
  const values = new Array(plane * image.channels);
  for (let p = 0; p < plane; p++) {
    const rgb = [pixels[4 * p], pixels[4 * p + 1], pixels[4 * p + 2]];
    const channels = image.channels === 1 ? [(rgb[0] + rgb[1] + rgb[2]) / 3] : rgb;
    channels.forEach((raw, c) => {
      const pixel = image.invert ? 255 - raw : raw;
      const value = (pixel * image.scale - image.mean[c]) / image.std[c];
      values[image.layout === "NCHW" ? c * plane + p : p * image.channels + c] = value;
    });
  }
  return values;
}

// -- the form ---------------------------------------------------------------------------------
function buildForm(manifest) {
  const form = $("#inputs");
  for (const spec of manifest.inputs) {
    const fieldset = document.createElement("fieldset");
    fieldset.id = `input-${spec.name}`;
    const legend = document.createElement("legend");
    legend.textContent = `${spec.name}: ${spec.dtype} [${spec.shape.join(", ")}]`;
    fieldset.append(legend);
    if (!spec.supported) {
      const message = document.createElement("p");
      message.className = "error unsupported";
      message.textContent = `Input '${spec.name}' has type ${spec.dtype}, which this page cannot fill ` +
        `(it supports ${Object.keys(TYPED).join(", ")}). Run this model from Python or adapt app.js.`;
      fieldset.append(message);
      form.append(fieldset);
      continue;
    }
    spec.shape.forEach((dim, axis) => {
      if (typeof dim === "number") return;
      const label = document.createElement("label");
      label.textContent = ` ${dim} `;
      const field = document.createElement("input");
      field.type = "number"; field.min = "1"; field.value = "1"; field.id = `dim-${spec.name}-${axis}`;
      label.append(field);
      fieldset.append(label);
    });
    const mode = document.createElement("select");
    mode.id = `mode-${spec.name}`;
    for (const option of (spec.image ? ["image", "random", "json"] : ["random", "json"])) {
      mode.append(new Option(option === "json" ? "paste JSON" : option, option));
    }
    const text = document.createElement("textarea");
    text.id = `json-${spec.name}`;
    text.placeholder = "A nested JSON array of numbers, e.g. [[0.1, 0.2, 0.3]] (a .npy saved as JSON works too)";
    text.addEventListener("input", () => { mode.value = "json"; });
    fieldset.append(" fill with ", mode, text);
    if (spec.image) imageWidget(spec, fieldset);
    form.append(fieldset);
  }
}

function inputValues(spec) {
  const mode = document.getElementById(`mode-${spec.name}`).value;
  if (mode === "image") return imageValues(spec);
  const dims = dimsOf(spec);
  if (mode === "random") return randomValues(spec.dtype, dims.reduce((a, b) => a * b, 1));
  const text = document.getElementById(`json-${spec.name}`).value.trim();
  let parsed;
  try { parsed = JSON.parse(text); } catch (err) {
    throw new Error(`Input '${spec.name}': the pasted text is not valid JSON (${plain(err)}).`);
  }
  return [parsed].flat(Infinity).map(Number);
}

// -- results a person reads: top-k with class names ---------------------------------------------
let manifest, ready;

function probabilitiesOf(row) {
  const sum = row.reduce((a, b) => a + b, 0);
  if (row.every((v) => v >= 0 && v <= 1) && Math.abs(sum - 1) < 1e-3) return { p: row, softmax: false };
  const top = Math.max(...row);
  const e = row.map((v) => Math.exp(v - top));
  const total = e.reduce((a, b) => a + b, 0);
  return { p: e.map((v) => v / total), softmax: true };
}

function topK(spec, values, dims, block) {
  const classes = dims[1];
  const k = Math.min(5, classes);
  let softmax = false;
  for (let row = 0; row < Math.min(dims[0], 4); row++) {
    const scores = probabilitiesOf(values.slice(row * classes, (row + 1) * classes));
    softmax = scores.softmax;
    const order = scores.p.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, k);
    const list = document.createElement("ol");
    list.className = "topk";
    list.id = `topk-${spec.name}-${row}`;
    for (const [p, i] of order) {
      const item = document.createElement("li");
      const name = spec.labels ? spec.labels[i] : `class ${i}`;
      item.dataset.label = name; item.dataset.index = String(i); item.dataset.p = String(p);
      const bar = document.createElement("span");
      bar.className = "bar"; bar.style.width = `${(100 * p).toFixed(1)}%`;
      item.append(`${name} `, bar, ` ${(100 * p).toFixed(1)}%`);
      list.append(item);
    }
    if (dims[0] > 1) block.append(`row ${row}:`);
    block.append(list);
  }
  const note = document.createElement("p");
  note.className = "note"; note.id = `softmax-${spec.name}`;
  note.textContent = softmax ? "softmax applied: the outputs are logits" : "the outputs are probabilities";
  block.append(note);
}

function render(outputs) {
  const section = $("#outputs");
  section.replaceChildren();
  for (const spec of manifest.outputs) {
    const tensor = outputs[spec.name];
    const values = Array.from(tensor.data, (v) => (typeof v === "bigint" ? Number(v) : v));
    const block = document.createElement("div");
    block.className = "output";
    block.id = `output-${spec.name}`;
    block.dataset.values = JSON.stringify(values);
    block.dataset.dims = JSON.stringify(tensor.dims);
    const title = document.createElement("h3");
    title.textContent = `${spec.name}: ${tensor.type} [${tensor.dims.join(", ")}]`;
    block.append(title);
    const classes = tensor.dims.length === 2 && tensor.dims[1] > 1 && tensor.type.startsWith("float");
    if (classes) {
      const winners = [];
      for (let row = 0; row < tensor.dims[0]; row++) {
        const slice = values.slice(row * tensor.dims[1], (row + 1) * tensor.dims[1]);
        winners.push(slice.indexOf(Math.max(...slice)));
      }
      const argmax = document.createElement("p");
      argmax.className = "argmax";
      argmax.id = `argmax-${spec.name}`;
      argmax.textContent = spec.labels ? winners.map((i) => spec.labels[i]).join(", ") : `argmax: ${winners.join(", ")}`;
      block.append(argmax);
      topK(spec, values, tensor.dims, block);
    }
    const pre = document.createElement("pre");
    pre.textContent = (classes ? "" : "values: ") +
      values.slice(0, 64).map((v) => (Number.isInteger(v) || typeof v !== "number" ? v : v.toFixed(5))).join(", ") +
      (values.length > 64 ? ` … (${values.length} values)` : "");
    block.append(pre);
    section.append(block);
  }
}

// -- running ----------------------------------------------------------------------------------
function feedsFromForm() {
  const feeds = {}, transfer = [];
  for (const spec of manifest.inputs) {
    if (!spec.supported) throw new Error(`Input '${spec.name}' has type ${spec.dtype}, which this page cannot fill.`);
    const dims = spec.image && document.getElementById(`mode-${spec.name}`).value === "image"
      ? spec.shape.map((d, axis) => (typeof d === "number" ? d : axis === 0 ? 1 : d))
      : dimsOf(spec);
    feeds[spec.name] = tensorFrom(spec, inputValues(spec), dims);
    transfer.push(feeds[spec.name].data.buffer);
  }
  return { feeds, transfer };
}

let firstRunMs = null;

async function runModel() {
  if (!ready) return;
  $("#error").textContent = "";
  $("#latency").removeAttribute("data-ms");
  try {
    const { feeds, transfer } = feedsFromForm();
    $("#status").textContent = "Running…";
    const result = await call({ type: "run", feeds }, transfer);
    render(result.outputs);
    if (firstRunMs === null) {
      firstRunMs = result.ms;
      $("#first-run").textContent = `${result.ms.toFixed(1)} ms`;
      $("#first-run").dataset.ms = String(result.ms);
    }
    $("#latency").textContent = `ran in ${result.ms.toFixed(2)} ms (onnxruntime-web ${manifest.runtime.version}, ` +
      `${ready.backend}, ${ready.threads} thread${ready.threads > 1 ? "s" : ""})`;
    $("#latency").dataset.ms = String(result.ms);
    $("#status").textContent = "Done.";
  } catch (err) {
    showError(`The model could not run: ${plain(err)}`);
  }
}

async function benchmark() {
  $("#error").textContent = "";
  try {
    const { feeds, transfer } = feedsFromForm();
    const runs = Number(new URLSearchParams(location.search).get("runs")) || 30;
    $("#status").textContent = `Timing ${runs} runs…`;
    const { times } = await call({ type: "bench", feeds, runs }, transfer);
    const sorted = [...times].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    $("#median").textContent = `${median.toFixed(2)} ms (median of ${times.length} runs)`;
    $("#median").dataset.ms = String(median);
    $("#status").textContent = "Done.";
  } catch (err) {
    showError(`The model could not run: ${plain(err)}`);
  }
}

function showBackend(info) {
  const backend = $("#backend");
  backend.dataset.used = info.backend;
  backend.dataset.requested = info.requested;
  backend.dataset.threads = String(info.threads);
  backend.textContent = info.fallback
    ? `wasm (${info.requested} was requested: ${info.fallback}; fell back to wasm)`
    : info.backend;
  $("#threads").textContent = `${info.threads} ` + (info.isolated
    ? "(the page is cross-origin isolated)"
    : "(not cross-origin isolated: serve the site with onnxbridge web --serve for more threads)");
  $("#fetch").textContent = `${info.fetchMs.toFixed(1)} ms`;
  $("#fetch").dataset.ms = String(info.fetchMs);
  $("#create").textContent = `${info.createMs.toFixed(1)} ms`;
  $("#create").dataset.ms = String(info.createMs);
}

async function main() {
  setInterval(() => { const t = $("#ticker"); t.textContent = String(Number(t.textContent) + 1); }, 50);
  try {
    manifest = await (await fetch("manifest.json")).json();
    document.title = manifest.title;
    $("#title").textContent = manifest.title;
    buildForm(manifest);
    const big = (manifest.model_bytes || 0) > 4 * 2 ** 20;
    const progress = $("#load-progress");
    progress.hidden = !big;
    ready = await startWorker(manifest, (loaded, total) => {
      progress.max = total || loaded; progress.value = loaded;
      $("#status").textContent = `Loading the model: ${(loaded / 2 ** 20).toFixed(1)} of ${((total || loaded) / 2 ** 20).toFixed(1)} MB…`;
    });
    showBackend(ready);
    $("#status").textContent = `Ready: onnxruntime-web ${manifest.runtime.version} on ${ready.backend}. Fill the inputs and press Run.`;
    $("#status").dataset.ready = "true";
    $("#run").disabled = false;
    $("#bench").disabled = false;
    $("#run").addEventListener("click", runModel);
    $("#bench").addEventListener("click", benchmark);
  } catch (err) {
    showError(`Loading failed: ${plain(err)}`);
  }
}

main();
