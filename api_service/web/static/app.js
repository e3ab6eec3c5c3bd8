// The web page: upload a CSV, poll its status politely, show each image before and after.
// Only the API's own routes, on this origin. Text from the server or the user is always set
// with textContent (never as HTML).
"use strict";

(() => {
  const API = "/api/v1";
  const POLL_MS = 1500; // at least this long between two polls; one poll at a time
  const HIDDEN_POLL_MS = 5000; // while the tab is hidden
  const SHOWN_IMAGES = 100; // the first images of the processing log; the output CSV has them all
  const KEY_STORAGE = "image-service-api-key";
  const FINAL = new Set(["completed", "completed_with_errors", "failed", "cancelled"]);
  const STATES = {
    pending: "Waiting",
    processing: "Processing",
    completed: "Completed",
    completed_with_errors: "Completed with errors",
    failed: "Failed",
    cancelled: "Cancelled",
  };
  const REUSED = {
    not_modified: "Reused: not modified since an earlier upload",
    unchanged: "Reused: unchanged since an earlier upload",
  };
  const RECENT = 10; // requests listed
  const RECENT_POLL_MS = 5000; // the list is looked at again while one of them is unfinished

  const byId = (id) => document.getElementById(id);
  const form = byId("upload-form");
  const fileInput = byId("file");
  const dropZone = byId("drop-zone");
  const fileName = byId("file-name");
  const webhookInput = byId("webhook-url");
  const refreshInput = byId("refresh");
  const keyField = byId("key-field");
  const keyInput = byId("api-key");
  const uploadButton = byId("upload-button");
  const messages = byId("messages");
  const message = byId("message");
  const errorList = byId("error-list");
  const result = byId("result");
  const requestIdText = byId("request-id");
  const stateText = byId("request-state");
  const progress = byId("progress");
  const progressText = byId("progress-text");
  const download = byId("download");
  const downloadLink = byId("download-link");
  const shownNote = byId("shown-note");
  const table = byId("images");
  const recentNote = byId("recent-note");
  const recentTable = byId("recent-table");
  const recentRows = byId("recent-rows");

  let current = null; // the request being watched: {id, timer, lastSeen, thumbnails}

  // ---- small helpers -------------------------------------------------------------------

  function element(tag, options = {}, ...children) {
    const node = document.createElement(tag);
    if (options.className) node.className = options.className;
    if (options.text !== undefined) node.textContent = String(options.text);
    for (const [name, value] of Object.entries(options.attrs || {})) node.setAttribute(name, String(value));
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function say(text, kind = "info") {
    message.textContent = text;
    messages.dataset.kind = kind;
  }

  function clearErrors() {
    errorList.replaceChildren();
  }

  function formatBytes(bytes) {
    if (bytes === null || bytes === undefined) return "";
    if (bytes < 1000) return `${bytes} B`;
    if (bytes < 1000 * 1000) return `${(bytes / 1000).toFixed(1)} kB`;
    return `${(bytes / 1000 / 1000).toFixed(2)} MB`;
  }

  function httpUrl(value) {
    // Only http(s) URLs become image sources or links.
    try {
      const url = new URL(value, window.location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  }

  function retryAfterSeconds(response, fallback) {
    const seconds = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    return Number.isFinite(seconds) && seconds >= 0 ? seconds : fallback;
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return {};
    }
  }

  function detailOf(body, response) {
    return typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
  }

  // ---- the API key (only when the service has keys) --------------------------------------

  function apiKey() {
    return keyInput.value.trim();
  }

  function authHeaders() {
    const key = apiKey();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function showKeyField() {
    keyField.hidden = false;
  }

  keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  if (document.body.dataset.apiKeys === "required" || keyInput.value) showKeyField();
  keyInput.addEventListener("input", () => {
    if (apiKey()) sessionStorage.setItem(KEY_STORAGE, apiKey());
    else sessionStorage.removeItem(KEY_STORAGE);
  });

  // ---- choosing or dropping a file ---------------------------------------------------------

  function showChosenFile() {
    const file = fileInput.files[0];
    fileName.textContent = file ? `Chosen: ${file.name} (${formatBytes(file.size)})` : "No file chosen";
    dropZone.classList.toggle("has-file", Boolean(file));
  }

  fileInput.addEventListener("change", showChosenFile);

  for (const type of ["dragenter", "dragover"]) {
    dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      dropZone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "dragend"]) {
    dropZone.addEventListener(type, () => dropZone.classList.remove("dragging"));
  }
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    const dropped = event.dataTransfer.files;
    if (!dropped.length) return;
    const chosen = new DataTransfer();
    chosen.items.add(dropped[0]);
    fileInput.files = chosen.files;
    showChosenFile();
    say(`${dropped[0].name} is ready to upload.`);
  });
  // A file dropped beside the zone must not replace the page.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

  // ---- uploading ---------------------------------------------------------------------------

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    clearErrors();
    if (!file) {
      say("Error: choose a CSV file first.", "error");
      fileInput.focus();
      return;
    }
    stopWatching();
    const body = new FormData();
    body.append("file", file, file.name);
    const webhookUrl = webhookInput.value.trim();
    if (webhookUrl) body.append("webhook_url", webhookUrl);
    if (refreshInput.checked) body.append("refresh", "true");

    uploadButton.disabled = true;
    say(`Uploading ${file.name}…`);
    let response;
    try {
      response = await fetch(`${API}/upload`, { method: "POST", body, headers: authHeaders() });
    } catch {
      say("Error: the service could not be reached. Check the connection and try again.", "error");
      return;
    } finally {
      uploadButton.disabled = false;
    }
    const answer = await readJson(response);
    if (response.status === 202) {
      watch(answer);
      loadRecent();
    } else showRefusal(response, answer);
  });

  function showRefusal(response, body) {
    const detail = detailOf(body, response);
    switch (response.status) {
      case 400:
        say(`Error: the file was refused: ${detail}`, "error");
        for (const problem of Array.isArray(body.errors) ? body.errors : []) {
          const column = problem.column ? `column “${problem.column}”` : "";
          const where = problem.line > 0 ? [`Line ${problem.line}`, column].filter(Boolean).join(", ") : problem.column || "File";
          errorList.append(element("li", { text: `${where}: ${problem.message}` }));
        }
        break;
      case 401:
        showKeyField();
        say(`Error: ${detail}. Enter an API key and upload again.`, "error");
        keyInput.focus();
        break;
      case 413:
        say(`Error: the file is too large: ${detail}`, "error");
        break;
      case 429:
        say(`Error: too many uploads (${detail}). Try again in ${retryAfterSeconds(response, 60)} s.`, "error");
        break;
      case 503:
        say(`Error: the service is busy (${detail}). Try again in ${retryAfterSeconds(response, 5)} s.`, "error");
        break;
      default:
        say(`Error: the upload failed (HTTP ${response.status}): ${detail}`, "error");
    }
  }

  // ---- watching a request ------------------------------------------------------------------

  function stopWatching() {
    if (current && current.timer) clearTimeout(current.timer);
    current = null;
  }

  function watch(accepted, note = `Uploaded: ${accepted.products} products, ${accepted.images} images. Processing…`) {
    const job = { id: accepted.request_id, timer: null, lastSeen: null, thumbnails: new Map() };
    current = job;
    requestIdText.textContent = job.id;
    stateText.textContent = STATES.pending;
    stateText.dataset.state = "pending";
    progress.max = Math.max(accepted.images, 1);
    progress.value = 0;
    progressText.textContent = `0 of ${accepted.images} images done, 0 failed`;
    download.hidden = true;
    downloadLink.href = `${API}/download/${encodeURIComponent(job.id)}`;
    shownNote.hidden = true;
    for (const body of table.querySelectorAll("tbody")) body.remove();
    result.hidden = false;
    say(note);
    schedule(job, 0);
  }

  function schedule(job, delay) {
    if (job !== current) return;
    const wait = document.hidden ? Math.max(delay, HIDDEN_POLL_MS) : delay;
    job.timer = setTimeout(() => poll(job), wait);
  }

  async function poll(job) {
    if (job !== current) return;
    let delay = POLL_MS;
    try {
      const path = `${API}/status/${encodeURIComponent(job.id)}`;
      const response = await fetch(path, { headers: authHeaders(), cache: "no-store" });
      const body = await readJson(response);
      if (job !== current) return;
      if (response.ok) {
        const final = FINAL.has(body.status);
        const seen = `${body.status}:${body.progress.images_done}:${body.progress.images_failed}`;
        showProgress(body);
        if (seen !== job.lastSeen) {
          // The processing log only when something changed: one request at a time.
          const shown = await loadImages(job, body);
          if (shown) job.lastSeen = seen;
        }
        if (final && job === current) {
          finish(job, body);
          return;
        }
      } else if (response.status === 429 || response.status === 503) {
        delay = Math.max(POLL_MS, retryAfterSeconds(response, 5) * 1000);
      } else {
        say(`Error: the status could not be read: ${detailOf(body, response)}`, "error");
        if (response.status === 401) showKeyField();
        return; // 401, 404: polling again would not help
      }
    } catch {
      delay = POLL_MS * 2; // the service is out of reach for now: keep trying, more slowly
    }
    schedule(job, delay);
  }

  function showProgress(body) {
    const { images_total: total, images_done: done, images_failed: failed, percentage } = body.progress;
    const reused = body.progress.images_reused ? `, ${body.progress.images_reused} reused` : "";
    progress.max = Math.max(total, 1);
    progress.value = done;
    progressText.textContent =
      `${done} of ${total} images done, ${failed} failed${reused} (${Number(percentage).toFixed(1)} %)`;
    stateText.textContent = STATES[body.status] || body.status;
    stateText.dataset.state = body.status;
  }

  function finish(job, body) {
    current = null;
    download.hidden = false;
    const failed = body.progress.images_failed;
    say(`Finished: ${STATES[body.status] || body.status}. ${failed} of ${body.progress.images_total} images failed.`);
    loadRecent();
  }

  downloadLink.addEventListener("click", async (event) => {
    // Without a key the link downloads as it is; with one, the file is fetched with the key.
    if (!apiKey()) return;
    event.preventDefault();
    const response = await fetch(downloadLink.href, { headers: authHeaders() });
    if (!response.ok) {
      say(`Error: the output CSV could not be downloaded: ${detailOf(await readJson(response), response)}`, "error");
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const save = element("a", { attrs: { href: url, download: `${requestIdText.textContent}.csv` } });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });

  // ---- the table of products and images -----------------------------------------------------

  async function loadImages(job, status) {
    const path = `${API}/status/${encodeURIComponent(job.id)}/images?limit=${SHOWN_IMAGES}`;
    const response = await fetch(path, { headers: authHeaders(), cache: "no-store" });
    if (!response.ok || job !== current) return false;
    const log = await readJson(response);
    if (!Array.isArray(log.images)) return false;
    const products = new Map((status.products || []).map((product) => [product.serial_number, product]));
    renderTable(job, log.images, products);
    if (log.images_total > log.images.length) {
      shownNote.textContent =
        `Showing the first ${log.images.length} of ${log.images_total} images; the output CSV has them all.`;
      shownNote.hidden = false;
    }
    return true;
  }

  function renderTable(job, images, products) {
    const groups = new Map();
    for (const entry of images) {
      if (!groups.has(entry.serial_number)) groups.set(entry.serial_number, []);
      groups.get(entry.serial_number).push(entry);
    }
    const bodies = [];
    for (const [serial, entries] of groups) {
      const product = products.get(serial);
      const body = element("tbody");
      entries.forEach((entry, index) => {
        const row = element("tr", { attrs: { "data-image": `${serial}-${entry.position}` } });
        if (index === 0) row.append(productCell(serial, product, entries.length));
        row.append(
          element("td", { text: `#${entry.position + 1}` }),
          beforeCell(job, entry, product),
          afterCell(job, entry, product),
          savingCell(entry),
        );
        row.dataset.status = entry.status;
        if (entry.reuse) row.dataset.reuse = entry.reuse;
        body.append(row);
      });
      bodies.push(body);
    }
    for (const old of table.querySelectorAll("tbody")) old.remove();
    table.append(...bodies);
  }

  function productCell(serial, product, rows) {
    const name = product ? product.product_name : `Product ${serial}`;
    const cell = element("th", { attrs: { scope: "rowgroup", rowspan: rows } });
    cell.append(element("span", { className: "serial", text: `${serial}.` }), " ", element("span", { text: name }));
    if (product) {
      const state = element("span", { className: "state", text: STATES[product.status] || product.status });
      state.dataset.state = product.status;
      cell.append(element("br"), state);
    }
    return cell;
  }

  function thumbnail(job, url, alt) {
    // The same element is kept across redraws, so a thumbnail is loaded once.
    const key = `${alt}\n${url}`;
    if (job.thumbnails.has(key)) return job.thumbnails.get(key);
    const source = httpUrl(url);
    if (!source) return element("span", { className: "muted", text: "No preview" });
    const image = element("img", {
      className: "thumbnail",
      attrs: { src: source, alt, loading: "lazy", decoding: "async", referrerpolicy: "no-referrer" },
    });
    const link = element("a", { attrs: { href: source, target: "_blank", rel: "noopener noreferrer" } }, image);
    image.addEventListener("error", () => {
      const missing = element("span", { className: "muted", text: "Preview unavailable" });
      link.replaceWith(missing);
      job.thumbnails.set(key, missing);
    });
    job.thumbnails.set(key, link);
    return link;
  }

  function imageName(entry, product) {
    const name = product ? product.product_name : `product ${entry.serial_number}`;
    return `image ${entry.position + 1} of ${name}`;
  }

  function caption(text) {
    return element("span", { className: "caption", text });
  }

  function beforeCell(job, entry, product) {
    const cell = element("td", { className: "image-cell" });
    cell.append(thumbnail(job, entry.input_url, `Original ${imageName(entry, product)}`));
    const facts = [];
    if (entry.bytes_in !== null) facts.push(formatBytes(entry.bytes_in));
    if (entry.format) facts.push(entry.format);
    if (entry.width && entry.height) facts.push(`${entry.width}×${entry.height}`);
    if (facts.length) cell.append(caption(facts.join(" · ")));
    return cell;
  }

  function afterCell(job, entry, product) {
    const cell = element("td", { className: "image-cell" });
    if (entry.status === "completed" && entry.output_url) {
      cell.append(thumbnail(job, entry.output_url, `Compressed ${imageName(entry, product)}`));
      cell.append(caption(formatBytes(entry.bytes_out)));
      if (REUSED[entry.reuse]) cell.append(element("span", { className: "reused", text: REUSED[entry.reuse] }));
    } else if (entry.status === "failed") {
      const failure = element("span", { className: "failure" });
      failure.append(element("strong", { text: "Failed: " }), entry.error || "unknown reason");
      cell.append(failure);
    } else {
      cell.append(element("span", { className: "muted", text: `${STATES[entry.status] || entry.status}…` }));
    }
    return cell;
  }

  function savingCell(entry) {
    if (entry.status !== "completed" || !entry.bytes_in || entry.bytes_out === null) {
      return element("td", { className: "muted", text: "—" });
    }
    const saved = entry.bytes_in - entry.bytes_out;
    if (saved <= 0) return element("td", { text: "None (original kept)" });
    const percent = ((100 * saved) / entry.bytes_in).toFixed(1);
    return element("td", { className: "saving", text: `${percent} % smaller (−${formatBytes(saved)})` });
  }

  // ---- the caller's recent requests, and what can be done with each --------------------------

  let recentTimer = null;

  async function loadRecent() {
    if (recentTimer) clearTimeout(recentTimer);
    recentTimer = null;
    let response;
    try {
      response = await fetch(`${API}/requests?limit=${RECENT}`, { headers: authHeaders(), cache: "no-store" });
    } catch {
      return; // out of reach for now: the list stays as it was
    }
    const body = await readJson(response);
    if (!response.ok) {
      recentTable.hidden = true;
      recentNote.textContent =
        response.status === 401 ? "Enter your API key to see your requests." : `The list could not be read: ${detailOf(body, response)}`;
      return;
    }
    const items = Array.isArray(body.requests) ? body.requests : [];
    recentRows.replaceChildren(...items.map(recentRow));
    recentTable.hidden = items.length === 0;
    recentNote.textContent = items.length ? `The ${items.length} newest, newest first.` : "No request yet.";
    if (items.some((item) => !FINAL.has(item.status))) recentTimer = setTimeout(loadRecent, RECENT_POLL_MS);
  }

  function recentRow(item) {
    const row = element("tr", { attrs: { "data-request": item.request_id } });
    const view = element("button", { className: "link-button", text: item.request_id.slice(0, 8), attrs: { type: "button", title: item.request_id } });
    view.addEventListener("click", () => watch(item, `Request ${item.request_id}: ${STATES[item.status] || item.status}.`));
    const state = element("span", { className: "state", text: STATES[item.status] || item.status });
    state.dataset.state = item.status;
    const { images_done: done, images_total: total, images_failed: failed, images_reused: reused } = item.progress;
    const counts = `${done}/${total} done, ${failed} failed` + (reused ? `, ${reused} reused` : "");
    row.append(
      element("td", {}, view),
      element("td", {}, state),
      element("td", { text: new Date(item.created_at).toLocaleString() }),
      element("td", { text: counts }),
      element("td", { className: "actions" }, ...actionsFor(item)),
    );
    return row;
  }

  function actionsFor(item) {
    const actions = [];
    if (!FINAL.has(item.status)) actions.push(action("Cancel", () => act(item, "POST", "cancel")));
    if (FINAL.has(item.status) && item.progress.images_failed > 0) {
      actions.push(action("Retry", () => act(item, "POST", "retry")));
    }
    if (FINAL.has(item.status)) actions.push(deleteAction(item));
    return actions;
  }

  function action(label, run) {
    const button = element("button", { className: "small", text: label, attrs: { type: "button" } });
    button.addEventListener("click", async () => {
      button.disabled = true;
      await run();
    });
    return button;
  }

  function deleteAction(item) {
    // Two steps rather than a dialog: the first click asks, the second deletes.
    const button = element("button", { className: "small danger", text: "Delete", attrs: { type: "button" } });
    button.addEventListener("click", async () => {
      if (button.dataset.armed !== "yes") {
        button.dataset.armed = "yes";
        button.textContent = "Confirm delete";
        return;
      }
      button.disabled = true;
      await act(item, "DELETE", "");
    });
    return button;
  }

  async function act(item, method, verb) {
    const path = `${API}/requests/${encodeURIComponent(item.request_id)}${verb ? `/${verb}` : ""}`;
    let response;
    try {
      response = await fetch(path, { method, headers: authHeaders() });
    } catch {
      say("Error: the service could not be reached. Try again.", "error");
      return;
    }
    const body = response.status === 204 ? {} : await readJson(response);
    if (!response.ok) {
      say(`Error: ${detailOf(body, response)}`, "error");
    } else if (method === "DELETE") {
      say(`Deleted request ${item.request_id}.`);
      if (current && current.id === item.request_id) stopWatching();
      if (requestIdText.textContent === item.request_id) result.hidden = true;
    } else {
      const note =
        verb === "cancel" ? `Cancelling request ${item.request_id}…` : `Retrying the failed images of ${item.request_id}…`;
      watch({ request_id: item.request_id, images: body.progress.images_total, products: body.progress.products_total }, note);
    }
    loadRecent();
  }

  keyInput.addEventListener("change", loadRecent);
  loadRecent();
})();
