// The altdub dashboard: one page on the service's own HTTP API. Plain ES module, no build step.
//
// Views (hash routes): sign-in, #/runs (list), #/import (upload form), #/runs/<id> (export, progress,
// history). The API key lives in sessionStorage and goes out as the x-api-key header.

const KEY_STORAGE = "altdub.apiKey";
const RUNS_PER_PAGE = 20;
const POLL_MS = 700;
const HISTORY_POLL_MS = 2500;
const URL_FRESH_MS = 10 * 60 * 1000; // re-sign a download link older than this before following it
const QC_PAGE_MS = 10 * 60 * 1000; // a QC report page's blob: URL is kept this long (a reload in its tab works)
// Exports a browser plays in a preview: one file in an <audio> or a <video> (not MXF or Matroska, which
// browsers do not play), and HLS packages through hls.js (vendored, loaded on the first preview).
const AUDIO_PREVIEWS = new Set(["mp3", "m4a", "aac", "flac", "wav"]);
const VIDEO_PREVIEWS = new Set(["mp4", "mov"]);
const HLS_SCRIPT = "web/vendor/hls.js/hls.min.js";

// Formats and their options come from GET /formats (the server's catalogue); these are only words for values.
const CHANNEL_LABELS = { 1: "Mono", 2: "Stereo", 6: "5.1 (6 channels)" };
const STEM_LABELS = { voice: "Voice only", background: "Background only" };
const STATUS_TEXT = {
  PENDING: "Pending",
  SUCCESS: "Success",
  ERROR: "Error",
  TIMEOUT: "Timed out",
  PAYMENT_REQUIRED: "Quota spent",
};
const STATUS_ICON = { PENDING: "◔", SUCCESS: "✓", ERROR: "✕", TIMEOUT: "⏱", PAYMENT_REQUIRED: "!" };
// A webhook event's state (GET /webhooks/deliveries), shown with the badge of the task state it resembles.
const DELIVERY_STATES = {
  pending: { text: "Pending", badge: "pending", icon: "◔" },
  delivered: { text: "Delivered", badge: "success", icon: "✓" },
  failed: { text: "Failed", badge: "error", icon: "✕" },
};
const REDELIVERY_POLL_MS = 1000;
const REDELIVERY_POLLS = 30; // the sender takes an event within a second; stop looking after this many
const FIELD_NAMES = {
  source: "Source file",
  source_language: "Source language",
  name: "Name",
  background: "Background stem",
  "dub_<language>": "Dubbed languages",
  output_format: "Format",
  language: "Language",
  languages: "Languages",
  default_language: "Default track",
  audio_bitrate: "Audio bitrate",
  sample_rate: "Sample rate",
  channels: "Channels",
  loudness: "Loudness",
  stem: "Stem",
  include_original_audio: "Original-language audio",
  subtitles: "Subtitles",
  api_key: "API key",
};

// --- small helpers -------------------------------------------------------------------------------

const $ = (root, role) => root.querySelector(`[data-role="${role}"]`);

/** Make an element: h("a", {href: "#", class: "x"}, "text", child). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/**
 * Untrusted text (a run's name) as an element of its own: <bdi> takes its direction from the text and
 * isolates it, so that right-to-left text or bidirectional marks in it never reorder the page around it.
 */
function isolated(text) {
  return h("bdi", {}, text);
}

/** The same for plain-text places (the window title, labels, dialogs): FIRST STRONG ISOLATE ... POP ISOLATE. */
function isolatedText(text) {
  return `\u2068${text}\u2069`;
}

function template(id) {
  return document.getElementById(id).content.firstElementChild.cloneNode(true);
}

function announce(text) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  window.setTimeout(() => (region.textContent = text), 50);
}

function formatDuration(seconds) {
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function timeElement(iso) {
  const date = new Date(iso);
  return h("time", { datetime: date.toISOString() }, dateFormat.format(date));
}

function dB(value) {
  return `${value.toFixed(1).replace("-", "−")}`;
}

function optionsSummary(format, options) {
  const parts = [];
  if (options.sample_rate) parts.push(`${options.sample_rate / 1000} kHz`);
  if (options.channels) parts.push({ 1: "mono", 2: "stereo", 6: "5.1" }[options.channels] || `${options.channels} ch`);
  if (options.audio_bitrate) parts.push(`${Math.round(options.audio_bitrate / 1000)} kb/s`);
  if (options.loudness) parts.push(loudnessLabels.get(options.loudness) || options.loudness);
  if (options.stem && options.stem !== "mix") parts.push(`${options.stem} stem`);
  if (options.include_original_audio) parts.push("+ original audio");
  if (options.subtitles && options.subtitles !== "none") parts.push("subtitles");
  return parts.join(" · ");
}

function requestedSummary(options) {
  const parts = [];
  if (options.audio_bitrate) parts.push(options.audio_bitrate.replace("k", " kb/s"));
  if (options.sample_rate) parts.push(`${options.sample_rate / 1000} kHz`);
  if (options.channels) parts.push({ 1: "mono", 2: "stereo", 6: "5.1" }[options.channels]);
  if (options.loudness) parts.push(loudnessLabels.get(options.loudness) || options.loudness);
  if (options.stem) parts.push(`${options.stem} stem`);
  if (options.include_original_audio) parts.push("+ original audio");
  if (options.subtitles) parts.push("subtitles");
  return parts.length ? parts.join(" · ") : "default options";
}

function statusBadge(status, progress) {
  const text = status === "PENDING" && progress > 0 ? `Running ${progress} %` : STATUS_TEXT[status] || status;
  return h(
    "span",
    { class: `badge badge-${status.toLowerCase()}`, dataset: { status } },
    h("span", { "aria-hidden": "true" }, STATUS_ICON[status] || "•"),
    " ",
    text,
  );
}

// --- the API ---------------------------------------------------------------------------------------

class ApiError extends Error {
  /** status 0 means the service could not be reached. fields: [{field, message}] from a 422. */
  constructor(status, message, fields = []) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

function apiUrl(path) {
  return new URL(path, document.baseURI).toString();
}

function fieldLabel(field, languages) {
  if (FIELD_NAMES[field]) return FIELD_NAMES[field];
  const match = /^(dub|voice|transcript)_(.+)$/.exec(field);
  if (match) {
    const what = { dub: "Dubbed mix", voice: "Voice stem", transcript: "Transcript" }[match[1]];
    const language = languages?.get(match[2].toLowerCase());
    return `${what} (${language ? language.language : match[2]})`;
  }
  return field;
}

/** Turn a failed answer into an ApiError whose message a person can act on. */
function errorFor(status, body, statusText) {
  const detail = body && typeof body === "object" ? body.detail : null;
  if (status === 422 && Array.isArray(detail)) {
    const fields = detail.map((d) => ({
      field: String((d.loc || []).filter((p) => p !== "body" && p !== "path" && p !== "query").at(-1) ?? ""),
      message: d.msg || "invalid value",
    }));
    return new ApiError(status, "The service did not accept this request:", fields);
  }
  const text = typeof detail === "string" ? detail : statusText || "";
  switch (status) {
    case 401:
      return new ApiError(status, `The API key was refused: ${text || "unauthorised"}.`);
    case 403:
      return new ApiError(status, `Access refused: ${text || "forbidden"}.`);
    case 404:
      return new ApiError(status, `Not found: ${text || "no such item"}. It may have been deleted, or belong to another workspace.`);
    case 413:
      return new ApiError(status, `Too large: ${text || "a file is over the service's size limit"}.`);
    case 422:
      return new ApiError(status, `The service did not accept this request: ${text}`);
    default:
      if (status >= 500)
        return new ApiError(status, `The service failed (HTTP ${status}${statusText ? ` ${statusText}` : ""}). Try again; if it keeps failing, look at the service's log.`);
      return new ApiError(status, `Unexpected answer from the service (HTTP ${status}): ${text || "no detail"}.`);
  }
}

const UNREACHABLE = "Could not reach the altdub service. Check that it is running and that this computer is online.";

/** Call the API. Resolves to parsed JSON (or the Response when raw); rejects with ApiError. */
async function api(path, { method = "GET", json, raw = false, key = apiKey(), signal } = {}) {
  const headers = {};
  if (key) headers["x-api-key"] = key;
  if (json !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(apiUrl(path), {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      signal,
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, UNREACHABLE);
  }
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    const error = errorFor(response.status, body, response.statusText);
    if (response.status === 401 && key && key === apiKey()) signOut(error.message);
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

let languagesPromise = null;

let formatsPromise = null;
const loudnessLabels = new Map(); // by target name, from the catalogue

/** The catalogue of output formats, {formats, loudness_targets} (a public read, cached). */
function formatCatalogue() {
  if (!formatsPromise) {
    formatsPromise = api("formats", { key: null })
      .then((catalogue) => {
        for (const target of catalogue.loudness_targets) loudnessLabels.set(target.name, target.label);
        return catalogue;
      })
      .catch((error) => {
        formatsPromise = null;
        throw error;
      });
  }
  return formatsPromise;
}

/** Every language, by lower-case short_name, sorted by name (a public read, cached). */
function allLanguages() {
  if (!languagesPromise) {
    languagesPromise = api("target-languages", { key: null })
      .then((list) => new Map(list.sort((a, b) => a.language.localeCompare(b.language)).map((l) => [l.short_name, l])))
      .catch((error) => {
        languagesPromise = null;
        throw error;
      });
  }
  return languagesPromise;
}

// Thumbnails: fetched with the key (an <img> cannot send headers), shown as blob: URLs, kept per run.
const thumbnails = new Map();
let thumbnailSlots = 3;
const thumbnailQueue = [];

function thumbnailUrl(runId) {
  if (!thumbnails.has(runId)) {
    thumbnails.set(
      runId,
      new Promise((resolve) => thumbnailQueue.push({ runId, resolve })),
    );
    pumpThumbnails();
  }
  return thumbnails.get(runId);
}

function pumpThumbnails() {
  while (thumbnailSlots > 0 && thumbnailQueue.length) {
    const { runId, resolve } = thumbnailQueue.shift();
    thumbnailSlots -= 1;
    api(`runs/${runId}/thumbnail`, { raw: true })
      .then((response) => response.blob())
      .then((blob) => resolve(URL.createObjectURL(blob)))
      .catch(() => {
        thumbnails.delete(runId); // try again on the next visit
        resolve(null);
      })
      .finally(() => {
        thumbnailSlots += 1;
        pumpThumbnails();
      });
  }
}

function fillThumbnail(box, run, alt) {
  box.replaceChildren();
  box.classList.toggle("thumb-audio", !run.has_video);
  if (!run.has_video) {
    box.append(h("span", { class: "thumb-label" }, h("span", { "aria-hidden": "true", class: "thumb-icon" }, "♪"), "Audio only"));
    return;
  }
  box.classList.add("thumb-loading");
  thumbnailUrl(run.run_id).then((url) => {
    box.classList.remove("thumb-loading");
    if (url) box.append(h("img", { src: url, alt, width: 320, height: 180 }));
    else box.append(h("span", { class: "thumb-label" }, "No preview"));
  });
}

// --- errors shown in a form --------------------------------------------------------------------------

function clearErrors(root) {
  for (const el of root.querySelectorAll(".field-error")) el.remove();
  for (const el of root.querySelectorAll("[aria-invalid]")) unmarkField(el);
}

/** Take back markField's mark from one control. */
function unmarkField(control) {
  if (control.id) document.getElementById(`${control.id}-error`)?.remove();
  control.removeAttribute("aria-invalid");
  const described = (control.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && !id.endsWith("-error"));
  if (described.length) control.setAttribute("aria-describedby", described.join(" "));
  else control.removeAttribute("aria-describedby");
}

function hideAlert(alert) {
  alert.hidden = true;
  alert.replaceChildren();
}

function showAlert(alert, message, items = [], { focus = true } = {}) {
  alert.replaceChildren(h("p", {}, message));
  if (items.length) alert.append(h("ul", {}, items.map((item) => h("li", {}, item))));
  alert.hidden = false;
  if (focus) alert.focus();
}

/** Mark a control invalid, with its message under it (announced with the control). */
function markField(control, message) {
  const id = `${control.id}-error`;
  control.closest(".field")?.append(h("p", { class: "field-error", id }, message));
  control.setAttribute("aria-invalid", "true");
  const described = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
  control.setAttribute("aria-describedby", [...described, id].join(" "));
  const details = control.closest("details");
  if (details) details.open = true;
}

/** Show an ApiError: a summary in ``alert``, each field's message beside its control in ``form``. */
function showError(alert, error, { form = null, languages = null, controlFor = null } = {}) {
  if (!(error instanceof ApiError)) {
    console.error(error);
    showAlert(alert, `Something went wrong in the page: ${error.message || error}`);
    return;
  }
  const items = error.fields.map(({ field, message }) => {
    const label = fieldLabel(field, languages);
    const control = form && (controlFor ? controlFor(field) : form.querySelector(`[data-field="${CSS.escape(field)}"]`));
    if (control) markField(control, message);
    return `${label}: ${message}`;
  });
  showAlert(alert, error.message, items);
}

// --- session -------------------------------------------------------------------------------------------

let signOutReason = null;

function signOut(reason = null) {
  sessionStorage.removeItem(KEY_STORAGE);
  signOutReason = reason;
  for (const url of thumbnails.values()) url.then((u) => u && URL.revokeObjectURL(u));
  thumbnails.clear();
  trackedTasks.clear();
  render();
}

function updateChrome(view) {
  const nav = document.getElementById("nav");
  const key = apiKey();
  nav.hidden = !key;
  document.getElementById("who").textContent = key ? `Key ${key.slice(0, 11)}…` : "";
  for (const link of nav.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// --- router ------------------------------------------------------------------------------------------

let current = null; // {controller, cleanups} of the view on screen
let firstRender = true;

function leaveView() {
  if (!current) return;
  current.controller.abort();
  for (const fn of current.cleanups) fn();
  current = null;
}

function newView() {
  const view = { controller: new AbortController(), cleanups: [] };
  view.signal = view.controller.signal;
  view.every = (fn, ms) => {
    const id = window.setInterval(fn, ms);
    view.cleanups.push(() => window.clearInterval(id));
  };
  current = view;
  return view;
}

function mount(node, title, navName) {
  const main = document.getElementById("main");
  main.replaceChildren(node);
  document.title = `${title} · altdub`;
  updateChrome(navName);
  if (!firstRender) node.querySelector("h1")?.focus();
  firstRender = false;
}

function render() {
  leaveView();
  const view = newView();
  const hash = window.location.hash || "#/runs";
  if (!apiKey()) return showSignIn(view);
  let match;
  if (hash === "#/runs" || hash === "#/" || hash === "#") return showRuns(view);
  if (hash === "#/import") return showImport(view);
  if ((match = /^#\/runs\/(\d+)$/.exec(hash))) return showRun(view, Number(match[1]));
  mount(template("tpl-not-found"), "Not found", null);
}

// --- sign in -----------------------------------------------------------------------------------------

function showSignIn(view) {
  const node = template("tpl-sign-in");
  const form = $(node, "form");
  const alert = $(node, "alert");
  const input = node.querySelector("#api-key");
  node.querySelector("#show-key").addEventListener("change", (event) => {
    input.type = event.target.checked ? "text" : "password";
  });
  mount(node, "Sign in", null);
  if (signOutReason) {
    showAlert(alert, `${signOutReason} Sign in again.`, [], { focus: false });
    signOutReason = null;
  }
  input.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    hideAlert(alert);
    const key = input.value.trim();
    if (!key) {
      markField(input, "Enter your API key.");
      input.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      await api("runs?page_size=1", { key, signal: view.signal });
      sessionStorage.setItem(KEY_STORAGE, key);
      announce("Signed in.");
      render(); // the page that asked for a key
    } catch (error) {
      if (error.name === "AbortError") return;
      button.disabled = false;
      button.textContent = "Sign in";
      if (error.status === 401) {
        markField(input, "This key is unknown or revoked.");
        showAlert(alert, error.message);
        input.focus();
      } else showError(alert, error);
    }
  });
}

// --- runs ------------------------------------------------------------------------------------------

async function showRuns(view, page = Number(sessionStorage.getItem("altdub.runsPage") || 1)) {
  const node = template("tpl-runs");
  mount(node, "Runs", "runs");
  const alert = $(node, "alert");
  const list = $(node, "list");
  const summary = $(node, "summary");
  const pager = $(node, "pager");
  showStorage($(node, "storage"), view);
  let body;
  try {
    body = await api(`runs?page=${page}&page_size=${RUNS_PER_PAGE}`, { signal: view.signal });
  } catch (error) {
    if (error.name === "AbortError" || error.status === 401) return;
    summary.textContent = "";
    showError(alert, error);
    return;
  }
  const pages = Math.max(1, Math.ceil(body.total / RUNS_PER_PAGE));
  if (page > pages) {
    sessionStorage.setItem("altdub.runsPage", String(pages));
    return showRuns(view, pages);
  }
  if (!body.total) {
    summary.replaceChildren("No runs yet. ", h("a", { href: "#/import" }, "Import a run"), " to make exports of it.");
    list.hidden = true;
    return;
  }
  summary.textContent = body.total === 1 ? "1 run, newest first." : `${body.total} runs, newest first.`;
  for (const run of body.items) list.append(runCard(run));
  if (pages > 1) {
    pager.hidden = false;
    $(pager, "page").textContent = `Page ${page} of ${pages}`;
    const go = (to) => {
      sessionStorage.setItem("altdub.runsPage", String(to));
      leaveView();
      showRuns(newView(), to).then(() => document.getElementById("runs-title").focus());
    };
    const prev = $(pager, "prev");
    const next = $(pager, "next");
    prev.disabled = page <= 1;
    next.disabled = page >= pages;
    prev.addEventListener("click", () => go(page - 1));
    next.addEventListener("click", () => go(page + 1));
  }
}

const plural = (count, one, many = `${one}s`) => `${count} ${count === 1 ? one : many}`;

/** The workspace's storage (GET /storage/usage): inputs, exports kept and removed, the lifecycle's settings. */
async function showStorage(section, view) {
  let usage;
  try {
    usage = await api("storage/usage", { signal: view.signal });
  } catch (error) {
    if (error.name === "AbortError" || error.status === 401) return;
    section.hidden = false;
    $(section, "storage-policy").textContent = `Storage usage unavailable: ${error.message}`;
    return;
  }
  const days = usage.export_ttl_days;
  const budget = usage.storage_budget_gb;
  $(section, "storage-facts").replaceChildren(
    ...fact("Inputs", h("span", { dataset: { role: "inputs" } }, formatBytes(usage.inputs_bytes)), " · imported files, never removed"),
    ...fact("Exports", h("span", { dataset: { role: "exports" } }, formatBytes(usage.exports_bytes)), ` · ${plural(usage.exports, "export")} kept`),
    ...fact("Removed", h("span", { dataset: { role: "removed" } }, plural(usage.removed_exports, "export")), " · made again when asked for"),
  );
  $(section, "storage-policy").textContent = [
    days ? `Exports not used for ${plural(days, "day")} are removed.` : "Exports are kept until their run is deleted.",
    budget
      ? `Past ${budget} GB stored by the whole service, the least recently used exports are removed first.`
      : "The service has no storage budget.",
  ].join(" ");
  section.hidden = false;
}

function runCard(run) {
  const thumb = h("div", { class: "thumb" });
  fillThumbnail(thumb, run, "");
  const href = `#/runs/${run.run_id}`;
  const card = h(
    "li",
    { class: "run-card", dataset: { runId: run.run_id } },
    h("a", { href, class: "thumb-link", tabindex: "-1", "aria-hidden": "true" }, thumb),
    h(
      "div",
      { class: "run-card-text" },
      h("h2", { class: "run-name" }, h("a", { href }, isolated(run.name))),
      h(
        "p",
        { class: "meta" },
        h("span", {}, `Run ${run.run_id}`),
        h("span", {}, h("span", { class: "visually-hidden" }, "Duration "), formatDuration(run.duration)),
        h("span", {}, run.has_video ? "Video" : "Audio only"),
        h("span", {}, `From ${run.source_language.language}`),
        h("span", {}, "Imported ", timeElement(run.created_at)),
      ),
      h(
        "ul",
        { class: "chips", "aria-label": "Dubbed languages" },
        run.languages.map((l) => h("li", { class: "chip", title: l.short_name }, l.language)),
      ),
    ),
    h("a", { href, class: "button run-open", "aria-label": `Export ${isolatedText(run.name)}` }, "Export →"),
  );
  return card;
}

// --- import ------------------------------------------------------------------------------------------

let rowCounter = 0;

async function showImport(view) {
  const node = template("tpl-import");
  mount(node, "Import a run", "import");
  const form = $(node, "form");
  const alert = $(node, "alert");
  const rows = $(node, "dubs");
  const sourceLanguage = node.querySelector("#source-language");
  rowCounter = 0; // ids need only be unique on the page, which holds one import form
  let languages;
  try {
    languages = await allLanguages();
  } catch (error) {
    showError(alert, error);
    return;
  }
  if (view.signal.aborted) return;
  for (const l of languages.values()) sourceLanguage.append(h("option", { value: l.short_name }, l.language));
  sourceLanguage.value = "en-us";

  const renumber = () => {
    const all = [...rows.children];
    all.forEach((row, i) => {
      $(row, "legend").textContent = `Language ${i + 1}`;
      $(row, "remove").hidden = all.length === 1;
      $(row, "remove").setAttribute("aria-label", `Remove language ${i + 1}`);
    });
  };
  const addRow = () => {
    const row = template("tpl-dub-row");
    const n = ++rowCounter;
    for (const control of row.querySelectorAll("[data-id]")) control.id = `dub${n}-${control.dataset.id}`;
    for (const label of row.querySelectorAll("label[data-for]")) label.htmlFor = `dub${n}-${label.dataset.for}`;
    const select = row.querySelector("[data-id=language]");
    select.append(h("option", { value: "" }, "Choose a language…"));
    for (const l of languages.values()) select.append(h("option", { value: l.short_name }, l.language));
    $(row, "remove").addEventListener("click", () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumber();
      next?.querySelector("select")?.focus();
    });
    rows.append(row);
    renumber();
    return row;
  };
  addRow();
  $(node, "add-dub").addEventListener("click", () => addRow().querySelector("select").focus());

  const upload = $(node, "upload");
  const bar = upload.querySelector("progress");
  const label = $(node, "upload-label");
  const detail = $(node, "upload-detail");
  const submit = $(node, "submit");
  const cancel = $(node, "cancel");
  let xhr = null;
  view.cleanups.push(() => xhr?.abort());

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (xhr) return;
    clearErrors(form);
    hideAlert(alert);
    const { data, problems } = collectImport(form, rows, languages);
    if (problems.length) {
      for (const [control, message] of problems) markField(control, message);
      showAlert(alert, "Please correct the marked fields:", problems.map(([c, m]) => `${labelOf(c)}: ${m}`));
      return;
    }
    submit.disabled = true;
    cancel.hidden = false;
    upload.hidden = false;
    bar.value = 0;
    label.textContent = "Uploading…";
    detail.textContent = "";
    const started = performance.now();
    xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl("runs"));
    xhr.setRequestHeader("x-api-key", apiKey());
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const percent = Math.floor((e.loaded / e.total) * 100);
      bar.value = percent;
      const seconds = (performance.now() - started) / 1000;
      const rate = seconds > 0.5 ? ` · ${formatBytes(e.loaded / seconds)}/s` : "";
      detail.textContent = `${formatBytes(e.loaded)} of ${formatBytes(e.total)} (${percent} %)${rate}`;
    });
    xhr.upload.addEventListener("load", () => {
      bar.value = 100;
      label.textContent = "Uploaded. The service is checking the files…";
      announce("Upload complete. Checking the files.");
    });
    const finish = () => {
      xhr = null;
      submit.disabled = false;
      cancel.hidden = true;
    };
    xhr.addEventListener("load", () => {
      const request = xhr;
      finish();
      let body = null;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = null;
      }
      if (request.status === 201 && body) {
        announce(`Run ${body.run_id} imported.`);
        sessionStorage.setItem("altdub.runsPage", "1");
        window.location.hash = `#/runs/${body.run_id}`;
        return;
      }
      upload.hidden = true;
      const error = errorFor(request.status, body, request.statusText);
      if (request.status === 401) return signOut(error.message);
      showError(alert, error, { form, languages, controlFor: (field) => importControl(form, field) });
    });
    xhr.addEventListener("error", () => {
      finish();
      upload.hidden = true;
      showAlert(alert, `The upload failed. ${UNREACHABLE}`);
    });
    xhr.addEventListener("abort", () => {
      finish();
      upload.hidden = true;
      if (!view.signal.aborted) {
        announce("Upload cancelled.");
        submit.focus();
      }
    });
    xhr.send(data);
  });
  cancel.addEventListener("click", () => xhr?.abort());
}

function labelOf(control) {
  const label = control.id && document.querySelector(`label[for="${CSS.escape(control.id)}"]`);
  const text = label ? label.textContent.replace(/\s*\(optional\)\s*/, "").trim() : control.name;
  const legend = control.closest(".dub-row")?.querySelector("legend");
  return legend ? `${legend.textContent}, ${text.toLowerCase()}` : text;
}

/** The form's fields as multipart data, each file field named as the API wants (dub_es-es, ...). */
function collectImport(form, rows, languages) {
  const data = new FormData();
  const problems = [];
  const name = form.querySelector("#run-name").value.trim();
  if (name) data.append("name", name);
  data.append("source_language", form.querySelector("#source-language").value);
  const source = form.querySelector("#source-file");
  if (source.files.length) data.append("source", source.files[0]);
  const seen = new Map();
  for (const row of rows.children) {
    const select = row.querySelector("[data-id=language]");
    const dub = row.querySelector("[data-id=dub]");
    const voice = row.querySelector("[data-id=voice]");
    const transcript = row.querySelector("[data-id=transcript]");
    const tag = select.value;
    for (const control of [select, dub, voice, transcript]) delete control.dataset.field;
    if (!tag) problems.push([select, "Choose the language of this dub."]);
    else if (seen.has(tag)) problems.push([select, `${languages.get(tag).language} is already ${seen.get(tag)}.`]);
    else seen.set(tag, row.querySelector("legend").textContent.toLowerCase());
    if (!dub.files.length) problems.push([dub, "Choose the dubbed audio file."]);
    if (!tag || problems.length) continue;
    dub.dataset.field = `dub_${tag}`;
    voice.dataset.field = `voice_${tag}`;
    transcript.dataset.field = `transcript_${tag}`;
    select.dataset.field = `language_${tag}`;
    data.append(`dub_${tag}`, dub.files[0]);
    if (voice.files.length) data.append(`voice_${tag}`, voice.files[0]);
    if (transcript.files.length) data.append(`transcript_${tag}`, transcript.files[0]);
  }
  const background = form.querySelector("#background-file");
  if (background.files.length) data.append("background", background.files[0]);
  return { data, problems };
}

function importControl(form, field) {
  if (field === "dub_<language>") return form.querySelector("[data-id=dub]");
  const exact = form.querySelector(`[data-field="${CSS.escape(field)}"]`);
  if (exact) return exact;
  // The service may name a language differently from how it was sent (an id, another case).
  const match = /^(dub|voice|transcript)_(.+)$/.exec(field);
  if (!match) return null;
  for (const control of form.querySelectorAll(`[data-field^="${match[1]}_"]`)) {
    if (control.dataset.field.toLowerCase() === field.toLowerCase()) return control;
  }
  return null;
}

// --- one run: export, progress, history --------------------------------------------------------------

// Tasks followed in this tab, per run: {taskId, language, format, summary, status, progress, url, urlAt, ...}.
const trackedTasks = new Map();

function tasksOf(runId) {
  if (!trackedTasks.has(runId)) trackedTasks.set(runId, []);
  return trackedTasks.get(runId);
}

async function showRun(view, runId) {
  const node = template("tpl-run");
  mount(node, `Run ${runId}`, "runs");
  const alert = $(node, "alert");
  let run;
  let languages;
  let catalogue;
  try {
    [run, languages, catalogue] = await Promise.all([
      api(`runs/${runId}`, { signal: view.signal }),
      allLanguages(),
      formatCatalogue(),
    ]);
  } catch (error) {
    if (error.name === "AbortError" || error.status === 401) return;
    $(node, "crumb").textContent = `Run ${runId}`;
    showError(alert, error);
    return;
  }
  if (view.signal.aborted) return;
  document.title = `${isolatedText(run.name)} · altdub`;
  $(node, "crumb").replaceChildren(isolated(run.name));
  $(node, "title").replaceChildren(isolated(run.name));
  fillThumbnail($(node, "thumb"), run, `A frame of ${isolatedText(run.name)}`);
  fillFacts($(node, "facts"), run);
  for (const role of ["head", "body", "history-section", "danger"]) $(node, role).hidden = false;
  if (!firstRender) $(node, "title").focus();

  const page = {
    view,
    run,
    languages,
    catalogue,
    node,
    tasks: tasksOf(run.run_id),
    historyAt: 0,
    openDeliveries: new Set(), // task ids whose webhook deliveries are shown (kept open across refreshes)
    formats: new Map(catalogue.formats.map((f) => [f.name, f])),
    preview: null,
  };
  setUpExportForm(page);
  $(node, "preview-close").addEventListener("click", () => {
    closePreview(page);
    announce("Preview closed.");
  });
  view.cleanups.push(() => closePreview(page));
  renderTasks(page);
  for (const task of page.tasks) if (task.status === "PENDING") followTask(page, task);
  $(node, "refresh").addEventListener("click", () => loadHistory(page, { announceDone: true }));
  loadHistory(page);
  view.every(() => {
    if (page.historyPending) loadHistory(page);
  }, HISTORY_POLL_MS);
  $(node, "delete").addEventListener("click", () => deleteRun(page));
}

/** A term and its description, for a <dl class="facts">. */
function fact(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

function fillFacts(dl, run) {
  const source = run.files.find((f) => f.role === "source");
  dl.replaceChildren(
    ...fact("Run", String(run.run_id)),
    ...fact("Duration", `${formatDuration(run.duration)} (${run.duration.toFixed(2)} s)`),
    ...fact("Source", `${run.source_language.language}`, source ? ` · ${source.original_name} (${source.codecs.join(", ")})` : " · no source file"),
    ...fact("Media", run.has_video ? "Video and audio" : "Audio only"),
    ...fact("Dubbed into", h("ul", { class: "chips" }, run.languages.map((l) => h("li", { class: "chip" }, l.language)))),
    ...fact("Imported", timeElement(run.created_at)),
  );
}

const kbps = (value) => `${parseInt(value, 10)} kb/s`;
const signed = (number) => String(number).replace("-", "−");

/** The words shown for one value of an option. */
function optionLabel(key, value, catalogue) {
  if (key === "audio_bitrate") return kbps(value);
  if (key === "sample_rate") return `${value / 1000} kHz`;
  if (key === "channels") return CHANNEL_LABELS[value] || `${value} channels`;
  if (key === "stem") return STEM_LABELS[value] || value;
  if (key === "raster") return value === "source" ? "The source's own" : value;
  if (key === "loudness") {
    const target = catalogue.loudness_targets.find((t) => t.name === value);
    return target ? `${target.label} (${signed(target.integrated)} LUFS)` : value;
  }
  return String(value);
}

/** Refill a select with the values the format allows, after its first (default) option; keep the choice if still allowed. */
function fillOptionSelect(select, key, spec, catalogue) {
  const chosen = select.value;
  // The stem and raster selects' first option is the default itself ("Dubbed mix"); other selects' is "the dub's own".
  const values = ["stem", "raster"].includes(key) ? spec.values.filter((v) => v !== spec.default) : spec.values;
  select.replaceChildren(select.options[0], ...values.map((v) => h("option", { value: String(v) }, optionLabel(key, v, catalogue))));
  select.value = values.map(String).includes(chosen) ? chosen : "";
}

function defaultBitrateLabel(spec) {
  const entries = Object.entries(spec.default);
  const distinct = new Set(entries.map(([, value]) => value));
  if (distinct.size === 1) return `Default (${kbps(entries[0][1])})`;
  return `Default (${entries.map(([channels, value]) => `${kbps(value)} ${(CHANNEL_LABELS[channels] || `${channels} ch`).toLowerCase()}`).join(", ")})`;
}

/**
 * The languages of an export: a select for a format that takes one, checkboxes (in the run's import
 * order, which is the tracks' order) and a default-track select for a master. Moving from one to
 * several starts from the language chosen; moving back keeps the default track.
 */
function languagePicker(form, alert, run, isMaster) {
  const language = form.querySelector("#export-language");
  const one = $(form, "language-one");
  const many = $(form, "language-many");
  const defaultTrack = form.querySelector("#export-default-language");
  const name = (l) => `${l.language} (${l.short_name})`;
  for (const l of run.languages) language.append(h("option", { value: l.short_name }, name(l)));
  const boxes = run.languages.map((l, i) => {
    const box = h("input", { type: "checkbox", id: `export-lang-${i}`, value: l.short_name });
    $(form, "language-checks").append(h("li", { class: "field-check" }, box, h("label", { for: box.id }, name(l))));
    return box;
  });
  const checked = () => boxes.filter((box) => box.checked).map((box) => box.value);
  const fillDefault = () => {
    const kept = defaultTrack.value;
    const codes = checked();
    const options = run.languages.filter((l) => codes.includes(l.short_name)).map((l) => h("option", { value: l.short_name }, name(l)));
    defaultTrack.replaceChildren(...(options.length ? options : [h("option", { value: "" }, "Check a language first")]));
    defaultTrack.disabled = !codes.length;
    defaultTrack.value = codes.includes(kept) ? kept : codes[0] || "";
  };
  let master = false;
  const picker = {
    language,
    many,
    isMaster: () => master,
    /** The languages of the tracks in order, and the default one. */
    chosen: () => (master ? { languages: checked(), default: defaultTrack.value } : { languages: [language.value], default: language.value }),
    /** Show the control the format takes. */
    sync() {
      const now = Boolean(isMaster());
      if (now && !master) {
        for (const box of boxes) box.checked = box.value === language.value;
        fillDefault();
      } else if (!now && master && defaultTrack.value) language.value = defaultTrack.value;
      master = now;
      one.hidden = master;
      many.hidden = !master;
    },
    onChange(fn) {
      language.addEventListener("change", fn);
      for (const box of boxes)
        box.addEventListener("change", () => {
          if (many.hasAttribute("aria-invalid") && checked().length) {
            unmarkField(many); // "check at least one" is answered
            if (!form.querySelector("[aria-invalid]")) hideAlert(alert);
          }
          fillDefault();
          fn();
        });
    },
    /** Where the service's complaint about a field goes. */
    control: (field) =>
      field === "languages" || field === "language" ? (master ? many : language) : form.querySelector(`[data-field="${CSS.escape(field)}"]`),
  };
  return picker;
}

function setUpExportForm(page) {
  const { node, run, catalogue } = page;
  const form = $(node, "export-form");
  const alert = $(node, "export-alert");
  const format = form.querySelector("#export-format");
  const byName = new Map(catalogue.formats.map((f) => [f.name, f]));
  const languages = languagePicker(form, alert, run, () => byName.get(format.value)?.multiple_languages);
  // Hand-offs for audio post come last, in a group of their own: several files for a mixer, not one deliverable.
  for (const [label, video, handoff] of [["Audio", false, false], ["Video", true, false], ["Hand-off for audio post", false, true]]) {
    const formats = catalogue.formats.filter((f) => f.is_video === video && f.handoff === handoff);
    const options = formats.map((f) =>
      h("option", { value: f.name, disabled: video && !run.has_video }, video && !run.has_video ? `${f.label} — needs video` : f.label),
    );
    format.append(h("optgroup", { label }, ...options));
  }
  const peaks = catalogue.loudness_targets.map((t) => `${t.label} ${signed(t.true_peak)} dBTP`).join(", ");
  $(form, "loudness-hint").textContent += ` True-peak ceilings: ${peaks}.`;
  // A voice stem is offered when every language asked for has one.
  const hasStem = (role) =>
    role === "background"
      ? run.files.some((f) => f.role === "background")
      : languages.chosen().languages.every((code) => run.files.some((f) => f.role === role && f.language?.short_name === code));
  const update = () => {
    const fmt = byName.get(format.value);
    languages.sync();
    for (const field of form.querySelectorAll("[data-option]")) {
      const key = field.dataset.option;
      const spec = fmt.options[key];
      field.hidden = !spec || (key === "include_original_audio" && !run.files.some((f) => f.role === "source"));
      const select = field.querySelector("select");
      if (spec && select) fillOptionSelect(select, key, spec, catalogue);
    }
    if (fmt.options.audio_bitrate) $(form, "default-bitrate").textContent = defaultBitrateLabel(fmt.options.audio_bitrate);
    const rate = fmt.options.sample_rate?.default;
    $(form, "default-rate").textContent = rate ? `Default (${rate / 1000} kHz)` : "Default (the dub's own)";
    const channels = fmt.options.channels?.values || [];
    $(form, "default-channels").textContent =
      channels.length === 1 ? `Default (${CHANNEL_LABELS[channels[0]] || `${channels[0]} channels`})` : "Default (the dub's own)";
    const hint = [fmt.note];
    if (!run.has_video) hint.push("This run has no video, so video formats are not offered.");
    $(form, "format-hint").textContent = hint.join(" ");
    const stem = form.querySelector("#opt-stem");
    const voice = stem.querySelector("option[value=voice]");
    const background = stem.querySelector("option[value=background]");
    voice.disabled = !hasStem("voice");
    background.disabled = !hasStem("background");
    if (stem.selectedOptions[0]?.disabled) stem.value = "";
    const codes = languages.chosen().languages;
    const noVoice = codes.filter((code) => !run.files.some((f) => f.role === "voice" && f.language?.short_name === code));
    const voiceWhere = languages.isMaster() ? `in ${noVoice.map((code) => page.languages.get(code)?.language || code).join(" or ")}` : "in this language";
    const missing = [voice.disabled && `voice stem ${voiceWhere}`, background.disabled && "background stem"].filter(Boolean);
    // Several dubbed tracks: the original comes after them all, and each language brings its transcript.
    const several = codes.length > 1;
    form.querySelector('label[for="opt-original"]').textContent = `Add the original-language audio ${several ? "after the dubbed tracks" : "as a second track"}`;
    form.querySelector('label[for="opt-subtitles"]').textContent = `Add ${several ? "each" : "the"} language's transcript as subtitles`;
    $(form, "stem-hint").textContent = missing.length ? `The run has no ${missing.join(" and no ")}.` : "";
  };
  format.addEventListener("change", update);
  languages.onChange(update);
  update();

  const submit = $(form, "export-submit");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    hideAlert(alert);
    const chosen = languages.chosen();
    if (!chosen.languages.length) {
      const message = "Check at least one language.";
      markField(languages.many, message);
      showAlert(alert, "Please correct the marked fields:", [`${FIELD_NAMES.languages}: ${message}`]);
      return;
    }
    // One path for every export; the default track is named only when there is a choice.
    const body = { output_format: format.value, languages: chosen.languages };
    if (chosen.languages.length > 1) body.default_language = chosen.default;
    const options = {};
    for (const field of form.querySelectorAll("[data-option]")) {
      if (field.hidden) continue;
      const control = field.querySelector("select, input");
      const key = field.dataset.option;
      if (control.type === "checkbox") {
        if (control.checked) options[key] = key === "subtitles" ? "soft" : true;
      } else if (control.value !== "") {
        options[key] = ["sample_rate", "channels"].includes(key) ? Number(control.value) : control.value;
      }
    }
    Object.assign(body, options);
    submit.disabled = true;
    submit.textContent = "Starting…";
    try {
      const answer = await api(`runs/${run.run_id}/exports`, {
        method: "POST",
        json: body,
        signal: page.view.signal,
      });
      const task = {
        taskId: answer.task_id || null,
        languages: chosen.languages,
        defaultLanguage: chosen.default,
        format: format.value,
        summary: requestedSummary(options),
        status: answer.output_url ? "SUCCESS" : "PENDING",
        progress: answer.output_url ? 100 : 0,
        url: answer.output_url || null,
        urlAt: Date.now(),
        existed: Boolean(answer.output_url),
        startedAt: Date.now(),
      };
      const running = task.taskId && page.tasks.find((t) => t.taskId === task.taskId);
      // The same finished export asked for again: bring its entry up rather than add another.
      const made =
        task.existed &&
        page.tasks.find((t) => t.status === "SUCCESS" && sameTracks(t, task) && t.format === task.format && t.summary === task.summary);
      if (running) {
        announce(`This ${task.format} export is already running.`);
        focusTask(page, running);
      } else {
        if (made) {
          page.tasks.splice(page.tasks.indexOf(made), 1);
          Object.assign(made, { url: task.url, urlAt: task.urlAt, existed: true });
        }
        page.tasks.unshift(made || task);
        renderTasks(page);
        focusTask(page, made || task);
        announce(task.existed ? `The ${task.format} export already exists: ready to download.` : `${task.format} export started.`);
        if (task.status === "PENDING") followTask(page, task);
        loadHistory(page);
      }
    } catch (error) {
      if (error.name === "AbortError" || error.status === 401) return;
      showError(alert, error, { form, languages: page.languages, controlFor: languages.control });
    } finally {
      submit.disabled = false;
      submit.textContent = "Start export";
    }
  });
}

function sameTracks(a, b) {
  return a.languages.join() === b.languages.join() && a.defaultLanguage === b.defaultLanguage;
}

/** The languages of an export in words: "French (France)", or "Spanish (Spain), French (France) (default)". */
function tracksText(page, codes, defaultCode) {
  const named = (code) => page.languages.get(code)?.language || code;
  if (codes.length === 1) return named(codes[0]);
  return codes.map((code) => (code === defaultCode ? `${named(code)} (default)` : named(code))).join(", ");
}

/** The languages of an export as a cell: the short name (the whole name on hover), in track order, the default marked. */
function tracksCell(page, codes, defaultCode) {
  const abbr = (code) => h("abbr", { title: page.languages.get(code)?.language || code }, code);
  if (codes.length === 1) return abbr(codes[0]);
  return h(
    "ol",
    { class: "track-languages", "aria-label": `${codes.length} audio tracks, in order` },
    codes.map((code) => h("li", {}, abbr(code), code === defaultCode && h("small", { class: "default-mark" }, " default"))),
  );
}

/**
 * What a finished export's message adds to its figures: an MXF track sheet, as a list; a master's
 * loudness per language (one language's figures are in the Loudness column already).
 */
function exportNotes(message, trackCount) {
  if (!message) return null;
  const notes = [];
  for (const note of message.split("; ")) {
    const sheet = /^track sheet: (.*)$/.exec(note);
    if (sheet) {
      const tracks = sheet[1].split(/, (?=A\d+ )/);
      notes.push(
        h(
          "details",
          { class: "track-sheet" },
          h("summary", {}, `Track sheet (${tracks.length} tracks)`),
          h("ol", {}, tracks.map((track) => h("li", {}, track))),
        ),
      );
    } else if (trackCount > 1) notes.push(h("p", { class: "cell-note cell-info" }, note));
  }
  return notes.length ? h("div", { class: "export-notes" }, notes) : null;
}

function focusTask(page, task) {
  const item = [...$(page.node, "tasks").children].find((li) => li.taskRef === task);
  item?.scrollIntoView({ block: "nearest" });
  item?.classList.add("flash");
  window.setTimeout(() => item?.classList.remove("flash"), 1200);
}

function followTask(page, task) {
  if (!task.taskId || task.following) return;
  task.following = true;
  const stop = () => {
    task.following = false;
    window.clearInterval(timer);
  };
  const poll = async () => {
    try {
      const status = await api(`dub-alt-format/${task.taskId}?run_id=${page.run.run_id}`, { signal: page.view.signal });
      Object.assign(task, {
        status: status.status,
        progress: status.progress,
        message: status.message,
        reason: status.exception_reason,
      });
      if (status.output_url) Object.assign(task, { url: status.output_url, urlAt: Date.now() });
      task.pollError = null;
      if (status.status !== "PENDING") {
        stop();
        announce(finishedText(task));
        loadHistory(page);
      }
    } catch (error) {
      if (error.name === "AbortError") return stop();
      if (error.status === 401) return stop();
      task.pollError = error.message;
      if (error.status === 404) {
        stop();
        task.status = "ERROR";
        task.message = "The task is gone: its run may have been deleted.";
      }
    }
    renderTask(page, task);
  };
  const timer = window.setInterval(poll, POLL_MS);
  page.view.cleanups.push(stop);
  poll();
}

function finishedText(task) {
  const what = `The ${task.format} export (${task.languages.join(", ")})`;
  return {
    SUCCESS: `${what} is ready to download.`,
    ERROR: `${what} failed.`,
    TIMEOUT: `${what} ran past the time limit and was stopped.`,
    PAYMENT_REQUIRED: `${what} was refused: the workspace's export quota is spent.`,
  }[task.status] || `${what} ended: ${task.status}.`;
}

function failureText(status, reason, message) {
  const base = {
    ERROR: "The conversion failed.",
    TIMEOUT: "The conversion ran past the service's time limit and was stopped. Try again, or ask for a longer limit.",
    PAYMENT_REQUIRED: "The workspace's export quota is spent; no work was done.",
  }[status];
  const parts = [base, message, reason && reason !== "TIMEOUT" ? `(${reason})` : null].filter(Boolean);
  return parts.join(" ");
}

/** The export's URL, signed again (through its task's status) when the page has been open long. */
async function freshUrl(task) {
  if (task.taskId && Date.now() - (task.urlAt || 0) >= URL_FRESH_MS) {
    const status = await api(`dub-alt-format/${task.taskId}`);
    Object.assign(task, { url: status.output_url, urlAt: Date.now(), message: status.message });
  }
  return task.url;
}

/** A streaming package's whole folder as one zip: package.zip beside its playlist, under the same signature. */
function packageZipUrl(url) {
  return new URL("package.zip", url).toString();
}

function isPackage(page, format) {
  return Boolean(page.formats.get(format)?.package_entry);
}

/** A download link that re-signs itself when the page was left open long; a package's downloads its zip. */
function downloadLink(page, task, label) {
  const zip = isPackage(page, task.format);
  const href = (url) => (zip ? packageZipUrl(url) : url);
  const link = h(
    "a",
    { class: "button button-small button-download", href: href(task.url), download: "", "aria-label": zip ? `${label} as a zip` : label },
    zip ? "Download zip" : "Download",
  );
  link.addEventListener("click", async (event) => {
    if (!task.taskId || Date.now() - (task.urlAt || 0) < URL_FRESH_MS) return;
    event.preventDefault();
    try {
      const url = await freshUrl(task);
      if (!url) {
        // The storage lifecycle removed the file since the page showed it: say so, and show the list as it is.
        showAlert($(page.node, "export-alert"), task.message || "This export's file was removed.");
        loadHistory(page);
        return;
      }
      link.href = href(url);
      window.location.assign(link.href);
    } catch (error) {
      showError($(page.node, "export-alert"), error);
    }
  });
  return link;
}

// --- preview: a player for a finished export -----------------------------------------------------------

/** How a browser plays an export of ``format``: "hls" (hls.js), "audio", "video", or null (download only). */
function previewKind(page, format) {
  if (page.formats.get(format)?.package_entry?.endsWith(".m3u8")) return "hls";
  if (AUDIO_PREVIEWS.has(format)) return "audio";
  if (VIDEO_PREVIEWS.has(format)) return "video";
  return null;
}

function previewButton(page, task, title) {
  const kind = previewKind(page, task.format);
  if (!kind) return null;
  return h(
    "button",
    { type: "button", class: "button button-small", "aria-label": `Preview the ${title} export`, onclick: () => openPreview(page, task, title, kind) },
    "Preview",
  );
}

let hlsLoading = null;

/** hls.js, loaded once, on the first preview of a package (a classic script: it defines window.Hls). */
function loadHls() {
  if (!hlsLoading) {
    hlsLoading = new Promise((resolve, reject) => {
      const script = h("script", { src: HLS_SCRIPT });
      script.addEventListener("load", () => resolve(window.Hls));
      script.addEventListener("error", () => {
        script.remove();
        hlsLoading = null;
        reject(new Error("the player (hls.js) could not be loaded"));
      });
      document.head.append(script);
    });
  }
  return hlsLoading;
}

/** Stop and remove the player on screen, if any (a new preview, Close, or leaving the page). */
function closePreview(page, { hide = true } = {}) {
  const preview = page.preview;
  const section = $(page.node, "preview-section");
  page.preview = null;
  if (preview) {
    preview.controller.abort();
    preview.hls?.destroy();
    preview.media.removeAttribute("src");
    preview.media.load();
  }
  $(section, "player").replaceChildren();
  $(section, "preview-tracks").hidden = true;
  hideAlert($(section, "preview-alert"));
  if (hide) section.hidden = true;
}

async function openPreview(page, task, title, kind) {
  closePreview(page, { hide: false });
  const section = $(page.node, "preview-section");
  const alert = $(section, "preview-alert");
  $(section, "preview-what").textContent = `· ${title}`;
  section.hidden = false;
  const media = h(kind === "audio" ? "audio" : "video", {
    controls: true,
    preload: "metadata",
    playsinline: kind !== "audio",
    class: `player-${kind === "audio" ? "audio" : "video"}`,
    "aria-label": `Preview of the ${title} export`,
  });
  const preview = { media, hls: null, controller: new AbortController() };
  page.preview = preview;
  $(section, "player").replaceChildren(media);
  section.querySelector("#preview-title").focus();
  section.scrollIntoView({ block: "nearest" });
  const cannotPlay = (why) =>
    page.preview === preview && showAlert(alert, `This export cannot be played here: ${why}. Download it to play it elsewhere.`, [], { focus: false });
  media.addEventListener("error", () => cannotPlay(media.error?.message || "the browser does not play this format"), { signal: preview.controller.signal });
  try {
    const url = await freshUrl(task);
    if (page.preview !== preview) return;
    if (kind === "hls") await playPackage(page, preview, url, cannotPlay);
    else {
      media.src = url;
      media.play().catch(() => {}); // the viewer presses play where the browser does not start it
    }
  } catch (error) {
    if (page.preview !== preview) return;
    if (error instanceof ApiError) showError(alert, error);
    else cannotPlay(error.message);
  }
}

/**
 * An HLS package in hls.js: the language menu lists every audio rendition by its NAME, the one hls.js
 * starts with (the playlist's DEFAULT=YES) selected, and switches hls.audioTrack; likewise subtitles.
 */
async function playPackage(page, preview, url, cannotPlay) {
  const Hls = await loadHls();
  if (page.preview !== preview) return;
  const { media } = preview;
  if (!Hls.isSupported()) {
    // Safari on iOS: no Media Source Extensions, but HLS is native there, with its own language menu.
    if (media.canPlayType("application/vnd.apple.mpegurl")) media.src = url;
    else cannotPlay("this browser has no Media Source Extensions");
    return;
  }
  const section = $(page.node, "preview-section");
  const audio = $(section, "preview-audio");
  const subtitles = $(section, "preview-subtitles");
  const signal = preview.controller.signal;
  // CMAF segments need no transmuxing: no worker (the page's policy allows no blob: worker either).
  const hls = new Hls({ enableWorker: false });
  preview.hls = hls;
  media.hls = hls; // the player's hls.js instance, for the browser's console and the tests
  hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, () => {
    audio.replaceChildren(...hls.audioTracks.map((track, index) => h("option", { value: index, dataset: { lang: track.lang || "" } }, track.name)));
    audio.value = String(hls.audioTrack);
    $(section, "preview-tracks").hidden = hls.audioTracks.length === 0;
  });
  hls.on(Hls.Events.AUDIO_TRACK_SWITCHING, (_, data) => (audio.value = String(data.id)));
  hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => {
    const tracks = hls.subtitleTracks.map((track, index) => h("option", { value: index }, track.name));
    subtitles.replaceChildren(h("option", { value: -1 }, "Off"), ...tracks);
    subtitles.value = String(hls.subtitleTrack);
    $(section, "preview-subtitles-field").hidden = tracks.length === 0;
  });
  hls.on(Hls.Events.SUBTITLE_TRACK_SWITCH, (_, data) => (subtitles.value = String(data.id)));
  hls.on(Hls.Events.MANIFEST_PARSED, () => media.play().catch(() => {}));
  hls.on(Hls.Events.ERROR, (_, data) => {
    if (data.fatal) cannotPlay(`${data.type}: ${data.details}`);
  });
  audio.addEventListener(
    "change",
    () => {
      hls.audioTrack = Number(audio.value);
      announce(`Audio language: ${audio.selectedOptions[0]?.textContent}.`);
    },
    { signal },
  );
  subtitles.addEventListener(
    "change",
    () => {
      hls.subtitleTrack = Number(subtitles.value);
      hls.subtitleDisplay = hls.subtitleTrack >= 0;
    },
    { signal },
  );
  hls.loadSource(url);
  hls.attachMedia(media);
}

function renderTasks(page) {
  const list = $(page.node, "tasks");
  $(page.node, "progress-empty").hidden = page.tasks.length > 0;
  list.replaceChildren(...page.tasks.map((task) => taskItem(page, task)));
}

function renderTask(page, task) {
  const list = $(page.node, "tasks");
  const old = [...list.children].find((li) => li.taskRef === task);
  if (old) {
    // Keep focus on a control that is replaced (the download link appearing, for instance).
    const hadFocus = old.contains(document.activeElement);
    const fresh = taskItem(page, task);
    old.replaceWith(fresh);
    if (hadFocus) (fresh.querySelector("a, button") || fresh).focus?.();
  } else renderTasks(page);
}

function taskItem(page, task) {
  const title = `${task.format.toUpperCase()} · ${tracksText(page, task.languages, task.defaultLanguage)}`;
  const item = h(
    "li",
    { class: `task task-${task.status.toLowerCase()}`, dataset: { task: task.taskId || "", status: task.status, format: task.format } },
    h("div", { class: "task-head" }, h("h3", { class: "task-title" }, title), statusBadge(task.status, task.progress)),
    h("p", { class: "task-options" }, task.summary),
  );
  item.taskRef = task;
  if (task.status === "PENDING") {
    const barId = `bar-${task.taskId}`;
    item.append(
      h(
        "div",
        { class: "task-progress" },
        h("label", { for: barId, class: "visually-hidden" }, `Progress of the ${title} export`),
        h("progress", { id: barId, max: 100, value: task.progress }),
        h("span", { class: "percent", "aria-hidden": "true" }, `${task.progress} %`),
      ),
      h("p", { class: "hint" }, task.progress > 0 ? "Converting…" : "Queued: waiting for a worker…"),
    );
  } else if (task.status === "SUCCESS" && !task.url) {
    item.append(h("p", { class: "hint", dataset: { role: "removed" } }, task.message || "The file was removed."));
  } else if (task.status === "SUCCESS") {
    item.append(
      h(
        "div",
        { class: "task-done" },
        h("p", { class: "hint" }, doneText(task)),
        h(
          "div",
          { class: "task-actions" },
          qcBadge(task.qc),
          task.qc && qcButton(page, task.taskId, title),
          previewButton(page, task, title),
          downloadLink(page, task, `Download the ${title} export`),
        ),
      ),
      exportNotes(task.message, task.languages.length),
    );
  } else {
    item.append(h("p", { class: "task-failure" }, failureText(task.status, task.reason, task.message)));
  }
  if (task.pollError) item.append(h("p", { class: "task-warning" }, `Progress unavailable: ${task.pollError} Retrying…`));
  return item;
}

function doneText(task) {
  const parts = [task.existed ? "This export already existed" : "Done"];
  if (task.size) parts.push(formatBytes(task.size));
  if (task.loudness) parts.push(`${dB(task.loudness.integrated)} LUFS, ${dB(task.loudness.true_peak)} dBTP peak`);
  return `${parts.join(" · ")}.`;
}

async function loadHistory(page, { announceDone = false } = {}) {
  const { node, run, view } = page;
  const alert = $(node, "history-alert");
  if (page.historyLoading) return;
  page.historyLoading = true;
  let entries;
  try {
    entries = await api(`runs/${run.run_id}/exports`, { signal: view.signal });
  } catch (error) {
    if (error.name !== "AbortError" && error.status !== 401) showError(alert, error, { form: null });
    return;
  } finally {
    page.historyLoading = false;
  }
  hideAlert(alert);
  page.historyPending = entries.some((e) => e.status === "PENDING");
  // Exports still running that this tab did not start (another tab, a reload): follow them too.
  for (const entry of entries) {
    if (entry.status === "PENDING" && !page.tasks.some((t) => t.taskId === entry.task_id)) {
      const task = {
        taskId: entry.task_id,
        languages: entry.languages,
        defaultLanguage: entry.language,
        format: entry.output_format,
        summary: optionsSummary(entry.output_format, entry.options),
        status: "PENDING",
        progress: entry.progress,
      };
      page.tasks.push(task);
      renderTasks(page);
      followTask(page, task);
    }
  }
  // Finished exports followed above get their size and loudness figures.
  for (const entry of entries) {
    const task = page.tasks.find((t) => t.taskId === entry.task_id);
    if (task && task.status === "SUCCESS" && entry.status === "SUCCESS" && task.size !== entry.size) {
      Object.assign(task, { size: entry.size, loudness: entry.loudness, message: entry.message, qc: entry.qc });
      renderTask(page, task);
    } else if (task && task.url && entry.status === "SUCCESS" && !entry.output_url) {
      Object.assign(task, { url: null, message: entry.message }); // removed by the storage lifecycle
      renderTask(page, task);
    }
  }
  const table = $(node, "history-table");
  const body = $(node, "history");
  $(node, "history-empty").hidden = entries.length > 0;
  table.hidden = entries.length === 0;
  const now = Date.now();
  body.replaceChildren(
    ...entries.map((entry) => {
      const task = { taskId: entry.task_id, url: entry.output_url, urlAt: now, format: entry.output_format };
      const label = `${entry.output_format.toUpperCase()} · ${tracksText(page, entry.languages, entry.language)}`;
      const failed = entry.status !== "SUCCESS" && entry.status !== "PENDING";
      const removed = entry.status === "SUCCESS" && !entry.output_url; // its file removed by the storage lifecycle
      const status = h(
        "td",
        { "data-label": "Status" },
        h(
          "div",
          {},
          statusBadge(entry.status, entry.progress),
          entry.status === "SUCCESS" && qcBadge(entry.qc),
          failed && h("p", { class: "cell-note" }, failureText(entry.status, entry.exception_reason, entry.message)),
          removed && h("p", { class: "cell-note cell-info", dataset: { role: "removed" } }, entry.message || "The file was removed."),
          entry.status === "SUCCESS" && !removed && exportNotes(entry.message, entry.languages.length),
          deliveriesDetails(page, entry.task_id),
        ),
      );
      const loudness = entry.loudness
        ? h(
            "td",
            { "data-label": "Loudness", class: "loudness" },
            h(
              "div",
              {},
              h("span", {}, `${dB(entry.loudness.integrated)} LUFS`, h("small", {}, " integrated")),
              h("span", {}, `${dB(entry.loudness.true_peak)} dBTP`, h("small", {}, " true peak")),
              h("span", {}, `${entry.loudness.lra.toFixed(1)} LU`, h("small", {}, " range")),
            ),
          )
        : h("td", { "data-label": "Loudness", class: "muted" }, "Not measured");
      return h(
        "tr",
        { dataset: { task: entry.task_id, status: entry.status, format: entry.output_format } },
        h("td", { "data-label": "Started" }, timeElement(entry.created_at)),
        h("td", { "data-label": "Languages" }, tracksCell(page, entry.languages, entry.language)),
        h("td", { "data-label": "Format" }, h("strong", {}, entry.output_format.toUpperCase())),
        h("td", { "data-label": "Options", class: "options-cell" }, optionsSummary(entry.output_format, entry.options) || "—"),
        status,
        h("td", { "data-label": "Size", class: "num" }, formatBytes(entry.size)),
        loudness,
        h(
          "td",
          { class: "cell-action" },
          h(
            "div",
            { class: "task-actions" },
            entry.qc && qcButton(page, entry.task_id, label),
            entry.output_url && previewButton(page, task, label),
            entry.output_url &&
              downloadLink(page, task, `Download ${label}, made ${dateFormat.format(new Date(entry.created_at))}`),
          ),
        ),
      );
    }),
  );
  if (announceDone) announce(`Past exports refreshed: ${entries.length}.`);
}

// --- QC reports (spec DELIVERIES §6) ---------------------------------------------------------------------

/** The export's QC verdict as a badge; the failing checks named in its text and title. */
function qcBadge(qc) {
  if (!qc) return null;
  const failed = qc.failed || [];
  return h(
    "span",
    {
      class: `badge badge-qc badge-${qc.passed ? "success" : "error"}`,
      dataset: { qc: qc.passed ? "passed" : "failed" },
      title: failed.length ? `Failing checks: ${failed.join(", ")}` : "Every QC check passed",
    },
    h("span", { "aria-hidden": "true" }, qc.passed ? "✓" : "✕"),
    " ",
    qc.passed ? "QC passed" : `QC failed: ${failed.join(", ")}`,
  );
}

function qcButton(page, taskId, label) {
  return h(
    "button",
    { type: "button", class: "button button-small", "aria-label": `QC report of the ${label} export`, onclick: () => openQcReport(page, taskId) },
    "QC report",
  );
}

/**
 * The report's page in a new tab. A tab cannot send the API key, so the page is fetched with it and shown
 * from a blob: URL (of this origin: it keeps this page's policy, which allows the report's own stylesheet
 * and its data: plots). The tab is opened in the click itself: one opened after the fetch is a blocked pop-up.
 */
async function openQcReport(page, taskId) {
  const tab = window.open("", "_blank");
  if (tab) tab.opener = null;
  try {
    const response = await api(`runs/${page.run.run_id}/exports/${encodeURIComponent(taskId)}/qc?format=html`, { raw: true });
    const url = URL.createObjectURL(new Blob([await response.text()], { type: "text/html;charset=utf-8" }));
    window.setTimeout(() => URL.revokeObjectURL(url), QC_PAGE_MS);
    if (tab) tab.location.replace(url);
    else h("a", { href: url, download: `qc-report-${taskId}.html` }).click(); // pop-ups refused: save it instead
  } catch (error) {
    tab?.close();
    if (error.name !== "AbortError") showError($(page.node, "history-alert"), error);
  }
}

// --- webhook deliveries of an export --------------------------------------------------------------------

/** A disclosure listing the export's webhook events and their tries, read when opened. */
function deliveriesDetails(page, taskId) {
  const details = h(
    "details",
    { class: "deliveries", dataset: { role: "deliveries" } },
    h("summary", {}, "Webhook deliveries"),
    h("div", { class: "deliveries-body" }, h("p", { class: "muted" }, "Loading…")),
  );
  details.addEventListener("toggle", () => {
    if (details.open) {
      page.openDeliveries.add(taskId);
      loadDeliveries(page, taskId);
    } else page.openDeliveries.delete(taskId);
  });
  if (page.openDeliveries.has(taskId)) details.open = true; // open before the refresh: open after it (toggle reads)
  return details;
}

function deliveriesOf(page, taskId) {
  return $(page.node, "history").querySelector(`tr[data-task="${CSS.escape(taskId)}"] details.deliveries`);
}

/** Read the export's events into its disclosure (the one on screen now); the events, or null when unread. */
async function loadDeliveries(page, taskId) {
  let events;
  try {
    events = await api(`webhooks/deliveries?task_id=${encodeURIComponent(taskId)}`, { signal: page.view.signal });
  } catch (error) {
    if (error.name === "AbortError" || error.status === 401) return null;
    const details = deliveriesOf(page, taskId);
    details?.querySelector(".deliveries-body").replaceChildren(h("p", { class: "cell-note" }, `Deliveries unavailable: ${error.message}`));
    return null;
  }
  const details = deliveriesOf(page, taskId);
  if (!details) return events;
  details.querySelector("summary").textContent = events.length ? `Webhook deliveries (${events.length})` : "Webhook deliveries";
  details.querySelector(".deliveries-body").replaceChildren(
    events.length
      ? h("ul", { class: "delivery-list" }, events.map((event) => deliveryItem(page, taskId, event)))
      : h("p", { class: "muted" }, "None: this export had no callback URL and the workspace no webhook."),
  );
  return events;
}

function deliveryItem(page, taskId, event) {
  const state = DELIVERY_STATES[event.status] || { text: event.status, badge: "pending", icon: "•" };
  const badge = h(
    "span",
    { class: `badge badge-${state.badge}`, dataset: { status: event.status } },
    h("span", { "aria-hidden": "true" }, state.icon),
    " ",
    state.text,
  );
  const button = h("button", { type: "button", class: "button button-small", "aria-label": `Redeliver the ${event.type} event` }, "Redeliver");
  button.addEventListener("click", () => redeliver(page, taskId, event, button));
  const tries = event.attempts.map((attempt, index) =>
    h(
      "li",
      { dataset: { statusCode: attempt.status_code ?? "" } },
      timeElement(attempt.attempted_at),
      ` · ${attempt.status_code ? `HTTP ${attempt.status_code}` : "no answer"} · ${Math.round(attempt.latency_ms)} ms`,
      attempt.error && h("span", { class: "attempt-error" }, ` · ${attempt.error}`),
    ),
  );
  return h(
    "li",
    { class: "delivery", dataset: { event: event.event_id, type: event.type, status: event.status } },
    h("div", { class: "delivery-head" }, h("code", {}, event.type), badge, button),
    h("p", { class: "delivery-url" }, event.url),
    tries.length
      ? h("ol", { class: "attempts", "aria-label": `Tries of the ${event.type} event` }, tries)
      : h("p", { class: "muted" }, "Not tried yet."),
    event.next_attempt_at && h("p", { class: "muted" }, "Next try ", timeElement(event.next_attempt_at)),
  );
}

/** Ask for the event to be sent again, then read the tries until the new one shows. */
async function redeliver(page, taskId, event, button) {
  button.disabled = true;
  try {
    await api(`webhooks/deliveries/${encodeURIComponent(event.event_id)}/redeliver`, { method: "POST", raw: true, signal: page.view.signal });
  } catch (error) {
    button.disabled = false;
    if (error.name === "AbortError" || error.status === 401) return;
    showError($(page.node, "history-alert"), error);
    return;
  }
  announce(`The ${event.type} event is being sent again.`);
  for (let poll = 0; poll < REDELIVERY_POLLS && !page.view.signal.aborted; poll += 1) {
    await new Promise((resolve) => window.setTimeout(resolve, REDELIVERY_POLL_MS));
    const events = await loadDeliveries(page, taskId);
    const now = events?.find((e) => e.event_id === event.event_id);
    if (!now || now.attempts.length > event.attempts.length) return;
  }
}

async function deleteRun(page) {
  const { run, node } = page;
  if (!window.confirm(`Delete “${isolatedText(run.name)}” (run ${run.run_id}), its files and all its exports? This cannot be undone.`)) return;
  const button = $(node, "delete");
  button.disabled = true;
  try {
    await api(`runs/${run.run_id}`, { method: "DELETE", signal: page.view.signal });
    trackedTasks.delete(run.run_id);
    thumbnails.delete(run.run_id);
    announce(`Run ${run.run_id} deleted.`);
    window.location.hash = "#/runs";
  } catch (error) {
    button.disabled = false;
    if (error.name === "AbortError" || error.status === 401) return;
    showError($(node, "alert"), error);
  }
}

// --- start -------------------------------------------------------------------------------------------

document.getElementById("sign-out").addEventListener("click", () => {
  signOut(null);
  announce("Signed out.");
});
window.addEventListener("hashchange", render);
render();
