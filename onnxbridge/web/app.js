// onnxbridge web page: builds a form from manifest.json and runs model.onnx with onnxruntime-web.
// Plain ES module, no build step: read it, change it, serve the folder with any static server.

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

async function loadRuntime(runtime) {
  const base = new URL(runtime.base, document.baseURI).href; // wasm paths resolve against the module otherwise
  const ort = await import(base + "ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = base;
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a plain static server lacks
  return ort;
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

function tensorFrom(ort, spec, values, dims) {
  const count = dims.reduce((a, b) => a * b, 1);
  if (values.length !== count) {
    throw new Error(`Input '${spec.name}' needs ${count} values for shape [${dims}], but got ${values.length}.`);
  }
  const Typed = TYPED[spec.dtype];
  const data = spec.dtype === "int64" ? Typed.from(values, (v) => BigInt(Math.round(v))) : Typed.from(values);
  return new ort.Tensor(spec.dtype, data, dims);
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
  upload.addEventListener("change", async () => {
    const bitmap = await createImageBitmap(upload.files[0]);
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    runModel();
  });
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = `Draw or upload an image; it is resized to ${image.width}x${image.height}, ` +
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

// -- running ----------------------------------------------------------------------------------
let session, ort, manifest;

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
    const pre = document.createElement("pre");
    pre.textContent = values.slice(0, 64).map((v) => (Number.isInteger(v) ? v : v.toFixed(5))).join(", ") +
      (values.length > 64 ? ` … (${values.length} values)` : "");
    block.append(title, pre);
    if (tensor.type.startsWith("float") && tensor.dims.length === 2 && tensor.dims[1] > 1) {
      const classes = tensor.dims[1];
      const winners = [];
      for (let row = 0; row < tensor.dims[0]; row++) {
        const slice = values.slice(row * classes, (row + 1) * classes);
        winners.push(slice.indexOf(Math.max(...slice)));
      }
      const argmax = document.createElement("p");
      argmax.className = "argmax";
      argmax.id = `argmax-${spec.name}`;
      argmax.textContent = `argmax: ${winners.join(", ")}`;
      block.append(argmax);
    }
    section.append(block);
  }
}

async function runModel() {
  if (!session) return;
  $("#error").textContent = "";
  try {
    const feeds = {};
    for (const spec of manifest.inputs) {
      if (!spec.supported) {
        throw new Error(`Input '${spec.name}' has type ${spec.dtype}, which this page cannot fill.`);
      }
      const dims = spec.image && document.getElementById(`mode-${spec.name}`).value === "image"
        ? spec.shape.map((d, axis) => (typeof d === "number" ? d : axis === 0 ? 1 : d))
        : dimsOf(spec);
      feeds[spec.name] = tensorFrom(ort, spec, inputValues(spec), dims);
    }
    const start = performance.now();
    const outputs = await session.run(feeds);
    const elapsed = performance.now() - start;
    render(outputs);
    $("#latency").textContent = `ran in ${elapsed.toFixed(2)} ms (onnxruntime-web ${manifest.runtime.version}, wasm)`;
    $("#latency").dataset.ms = String(elapsed);
    $("#status").textContent = "Done.";
  } catch (err) {
    showError(`The model could not run: ${plain(err)}`);
  }
}

async function main() {
  try {
    manifest = await (await fetch("manifest.json")).json();
    document.title = manifest.title;
    $("#title").textContent = manifest.title;
    buildForm(manifest);
    ort = await loadRuntime(manifest.runtime);
    session = await ort.InferenceSession.create(manifest.model, { executionProviders: ["wasm"] });
    $("#status").textContent = `Ready: onnxruntime-web ${manifest.runtime.version}. Fill the inputs and press Run.`;
    $("#status").dataset.ready = "true";
    $("#run").disabled = false;
    $("#run").addEventListener("click", runModel);
  } catch (err) {
    showError(`Loading failed: ${plain(err)}`);
  }
}

main();
