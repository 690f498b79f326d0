// onnxbridge web page, worker side: onnxruntime-web runs here, off the page's thread, so the
// page stays responsive while a large model loads and runs. Messages from app.js:
//   {type: "load", manifest, base, modelUrl, backend}   -> progress..., then ready (or failed)
//   {type: "run", id, feeds}                           -> result {id, outputs, ms}
//   {type: "bench", id, feeds, runs}                   -> benched {id, times}
let ort, session;

function post(message, transfer = []) { self.postMessage(message, transfer); }

async function fetchModel(url, total) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`fetching ${url} failed: HTTP ${response.status}`);
  const size = Number(response.headers.get("Content-Length")) || total || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0, lastPost = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    if (loaded - lastPost > 1 << 20 || loaded === size) { post({ type: "progress", loaded, total: size }); lastPost = loaded; }
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) { bytes.set(chunk, offset); offset += chunk.length; }
  post({ type: "progress", loaded, total: size || loaded });
  return bytes;
}

async function backendAvailable(backend) {
  if (backend === "webgpu") {
    if (!self.navigator.gpu) return "this browser has no WebGPU (navigator.gpu is missing)";
    const adapter = await self.navigator.gpu.requestAdapter();
    return adapter ? "" : "no WebGPU adapter (no GPU, or it is disabled)";
  }
  if (backend === "webgl") {
    if (typeof OffscreenCanvas === "undefined") return "no OffscreenCanvas in this worker";
    return new OffscreenCanvas(1, 1).getContext("webgl2") ? "" : "no WebGL2 context (no GPU, or it is disabled)";
  }
  return "";
}

async function runtime(base, module) {
  const loaded = await import(base + module);
  loaded.env.wasm.wasmPaths = base;
  // Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages.
  loaded.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(4, self.navigator.hardwareConcurrency || 1)) : 1;
  return loaded;
}

async function load({ manifest, base, modelUrl, backend }) {
  const fetchStart = performance.now();
  const bytes = await fetchModel(modelUrl, manifest.model_bytes);
  const fetchMs = performance.now() - fetchStart;
  const createStart = performance.now();
  let used = "wasm", fallback = "";
  if (backend !== "wasm") {
    fallback = await backendAvailable(backend);
    if (!fallback) {
      try {
        ort = await runtime(base, manifest.runtime.module);
        session = await ort.InferenceSession.create(bytes, { executionProviders: [backend] });
        used = backend;
      } catch (err) {
        fallback = `${backend} could not run this model (${String(err && err.message ? err.message : err)})`;
      }
    }
  }
  if (!session) {
    // The plain WebAssembly build: the other builds leave out operators (WebGPU's has no ai.onnx.ml).
    ort = await runtime(base, manifest.runtime.wasm_module || manifest.runtime.module);
    session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  }
  post({
    type: "ready", backend: used, requested: backend, fallback, threads: ort.env.wasm.numThreads,
    isolated: self.crossOriginIsolated, fetchMs, createMs: performance.now() - createStart,
  });
}

function tensors(feeds) {
  const out = {};
  for (const [name, f] of Object.entries(feeds)) out[name] = new ort.Tensor(f.type, f.data, f.dims);
  return out;
}

async function run({ id, feeds }) {
  const inputs = tensors(feeds);
  const start = performance.now();
  const outputs = await session.run(inputs);
  const ms = performance.now() - start;
  const plain = {}, transfer = [];
  for (const [name, t] of Object.entries(outputs)) {
    plain[name] = { type: t.type, data: t.data, dims: Array.from(t.dims) };
    if (t.data.buffer) transfer.push(t.data.buffer);
  }
  post({ type: "result", id, outputs: plain, ms }, transfer);
}

async function bench({ id, feeds, runs }) {
  const inputs = tensors(feeds);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await session.run(inputs);
    times.push(performance.now() - start);
  }
  post({ type: "benched", id, times });
}

self.onmessage = async (event) => {
  const message = event.data;
  try {
    if (message.type === "load") await load(message);
    else if (message.type === "run") await run(message);
    else if (message.type === "bench") await bench(message);
  } catch (err) {
    post({ type: "failed", id: message.id, stage: message.type, message: String(err && err.message ? err.message : err) });
  }
};
