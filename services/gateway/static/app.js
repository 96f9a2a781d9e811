// leadflow dashboard: the tenant's jobs with live progress, one job's results, job actions.
// Plain ES module, no build step. Every API call carries `Authorization: Bearer <key>` from
// the key field (kept in sessionStorage for this tab). Live data comes from
// GET /v1/jobs/{id}/events read with fetch(): EventSource cannot send that header.

import { newJobPage } from "./newjob.js";
import * as credits from "./credits.js";

const KEY_STORAGE = "leadflow.apiKey";
const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);
// Browsers open at most 6 HTTP/1.1 connections per host; each live row holds one.
const MAX_LIVE_ROWS = 4;
const LIST_REFRESH_MS = 5000;
const MAX_TABLE_ROWS = 500;
const RESULT_COLUMNS = [
  "id", "status", "full_name", "title", "company", "company_domain", "email",
  "email_status", "seniority", "location",
];

const $ = (selector) => document.querySelector(selector);
// Bumped on every navigation: answers that arrive for a view the user has left are dropped.
let view = 0;
// Pages in files of their own (schedules.js, deadletters.js) and parts of the job page
// (throughput.js) register here: {pattern, section, show(match), leave()} / {show(jobId), leave()}.
const pages = [];
const jobParts = [];
export const registerPage = (page) => pages.push(page);
export const registerJobPart = (part) => jobParts.push(part);
export const currentView = () => view;

// ---- HTTP ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail, retryAfterS = null) {
    super(detail);
    this.status = status;
    this.retryAfterS = retryAfterS; // from Retry-After (429, 503), in seconds
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) ?? "";
}

function withAuth(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

async function problemOf(response) {
  let detail = response.statusText || "request failed";
  try {
    const problem = await response.json();
    if (problem && typeof problem.detail === "string") detail = problem.detail;
  } catch {
    // not problem+json: keep the status text
  }
  const retryAfter = response.headers.get("Retry-After");
  return new ApiError(response.status, detail, /^\d+$/.test(retryAfter ?? "") ? Number(retryAfter) : null);
}

async function api(path, { method = "GET", body, accept = "application/json" } = {}) {
  const headers = withAuth({ Accept: accept });
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (!response.ok) throw await problemOf(response);
  return response;
}

const jobPath = (jobId) => `/v1/jobs/${encodeURIComponent(jobId)}`;

// ---- Server-Sent Events over fetch -----------------------------------------------------

// Assembles events from text chunks as the SSE spec does (fields, comments, CR/LF/CRLF).
class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.lastEventId = null;
    this.retryMs = null;
    this.reset();
  }

  reset() {
    this.type = "";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    const lineEnd = /\r\n|\r|\n/g;
    let start = 0;
    for (let match; (match = lineEnd.exec(this.buffer)) !== null; ) {
      // A CR that ends the chunk may be the first half of a CRLF split across chunks.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      this.line(this.buffer.slice(start, match.index));
      start = lineEnd.lastIndex;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      if (this.data.length > 0) {
        this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment (heartbeat)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
  }
}

// One job's event stream; reconnects with Last-Event-ID until the job is terminal.
class JobStream {
  constructor(jobId, handlers, { leads = true } = {}) {
    this.jobId = jobId;
    this.handlers = handlers;
    this.url = `${jobPath(jobId)}/events${leads ? "" : "?leads=false"}`;
    this.lastEventId = null;
    this.retryMs = 2000;
    this.controller = new AbortController();
    this.stopped = false;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    this.controller.abort();
  }

  async run() {
    let failures = 0;
    while (!this.stopped) {
      let terminal = false;
      let waitMs = 0;
      try {
        terminal = await this.readOnce(() => { failures = 0; });
      } catch (error) {
        if (this.stopped) return;
        // 429: too many streams open (or too many wrong keys) for now; wait as told.
        if (error instanceof ApiError && error.status < 500 && error.status !== 429) {
          this.handlers.onError?.(error); // a wrong key or an unknown job: retrying won't help
          return;
        }
        failures += 1;
        if (error instanceof ApiError && error.retryAfterS !== null) waitMs = error.retryAfterS * 1000;
      }
      if (terminal) {
        this.handlers.onEnd?.();
        return;
      }
      if (this.stopped) return;
      // The stream ended (its lifetime, network, gateway restart): back off, then resume
      // after the last event received (Last-Event-ID).
      const backoffMs = Math.min(this.retryMs * 2 ** Math.min(failures, 4), 30000);
      await new Promise((resolve) => setTimeout(resolve, Math.max(waitMs, backoffMs)));
    }
  }

  async readOnce(onEvent) {
    const headers = { Accept: "text/event-stream" };
    if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
    const response = await fetch(this.url, {
      headers: withAuth(headers),
      signal: this.controller.signal,
      cache: "no-store",
    });
    if (!response.ok) throw await problemOf(response);
    let terminal = false;
    const parser = new SseParser((event) => {
      this.lastEventId = event.id;
      onEvent();
      terminal = this.dispatch(event) || terminal;
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
    }
    if (parser.retryMs !== null) this.retryMs = parser.retryMs;
    return terminal;
  }

  dispatch(event) {
    const data = JSON.parse(event.data);
    if (event.type === "lead") this.handlers.onLead?.(data);
    else if (event.type === "progress") this.handlers.onProgress?.(data);
    else if (event.type === "state") {
      this.handlers.onState?.(data);
      return TERMINAL.has(data.state);
    }
    return false;
  }
}

// ---- small DOM helpers -----------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name in node) node[name] = value;
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function cell(value) {
  return el("td", {}, value === null || value === undefined || value === "" ? "—" : String(value));
}

function timeEl(iso) {
  if (!iso) return "—";
  return el("time", { dateTime: iso, title: iso }, new Date(iso).toLocaleString());
}

function stateBadge(node, state) {
  node.textContent = state;
  node.className = `state state-${state}`;
}

function progressBar(label) {
  const fill = el("div", { className: "progress-fill" });
  const text = el("span", { className: "progress-text" }, "0%");
  const bar = el("div", {
    className: "progress",
    role: "progressbar",
    "aria-label": label,
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuenow": "0",
  }, fill, text);
  return {
    node: bar,
    set(progress) {
      const percent = Number(progress.percent) || 0;
      bar.setAttribute("aria-valuenow", String(percent));
      const total = progress.total ?? "?";
      bar.setAttribute("aria-valuetext", `${percent}% (${progress.done} of ${total})`);
      fill.style.width = `${Math.min(percent, 100)}%`;
      text.textContent = `${percent}%`;
    },
  };
}

function showError(error) {
  const node = $("#error");
  const status = error instanceof ApiError ? ` (HTTP ${error.status})` : "";
  node.textContent = `${error.message}${status}`;
  node.hidden = false;
}

function showNotice(text) {
  const node = $("#notice");
  node.textContent = text;
  node.hidden = false;
}

function clearMessages() {
  for (const node of [$("#error"), $("#notice")]) {
    node.hidden = true;
    node.textContent = "";
  }
}

// ---- jobs list ---------------------------------------------------------------------------

const jobsView = { rows: new Map(), streams: new Map(), jobs: [], timer: null, failing: false };

function jobRow(job) {
  const state = el("span");
  const bar = progressBar(`Progress of job ${job.job_id}`);
  const link = el("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}` }, el("code", {}, job.job_id));
  const tr = el("tr", { dataset: { jobId: job.job_id } },
    el("td", {}, link), cell(job.kind), el("td", {}, state), el("td", {}, bar.node),
    el("td", {}, timeEl(job.created_at)));
  const row = {
    tr,
    state: job.state,
    setState(value) {
      row.state = value;
      stateBadge(state, value);
    },
    setProgress: (progress) => bar.set(progress),
    setLive: (live) => tr.classList.toggle("live", live),
  };
  return row;
}

async function showJobs() {
  $("#jobs-view").hidden = false;
  $("#job-view").hidden = true;
  document.title = "Jobs · leadflow";
  await refreshJobs();
  jobsView.timer = setInterval(() => {
    if (!document.hidden) refreshJobs();
  }, LIST_REFRESH_MS);
}

function leaveJobs() {
  clearInterval(jobsView.timer);
  jobsView.timer = null;
  jobsView.failing = false;
  for (const stream of jobsView.streams.values()) stream.stop();
  jobsView.streams.clear();
  jobsView.rows.clear();
  $("#jobs tbody").replaceChildren();
}

async function refreshJobs() {
  const current = view;
  let jobs;
  try {
    jobs = (await (await api("/v1/jobs?limit=50")).json()).jobs;
  } catch (error) {
    if (current === view) showError(error);
    jobsView.failing = true;
    return;
  }
  if (current !== view) return;
  if (jobsView.failing) clearMessages(); // the list loads again: the old error is stale
  jobsView.failing = false;
  jobsView.jobs = jobs;
  const body = $("#jobs tbody");
  const listed = new Set();
  jobs.forEach((job, index) => {
    listed.add(job.job_id);
    let row = jobsView.rows.get(job.job_id);
    if (!row) {
      row = jobRow(job);
      jobsView.rows.set(job.job_id, row);
    }
    if (body.children[index] !== row.tr) body.insertBefore(row.tr, body.children[index] ?? null);
    if (!jobsView.streams.has(job.job_id)) {
      // Live rows are fed by their stream only; the others show the list's snapshot.
      row.setState(job.state);
      row.setProgress(job.progress);
    }
  });
  for (const [jobId, row] of jobsView.rows) {
    if (listed.has(jobId)) continue;
    row.tr.remove();
    jobsView.rows.delete(jobId);
    jobsView.streams.get(jobId)?.stop();
    jobsView.streams.delete(jobId);
  }
  $("#jobs-empty").hidden = jobs.length > 0;
  startLiveRows();
}

function startLiveRows() {
  for (const job of jobsView.jobs) {
    if (jobsView.streams.size >= MAX_LIVE_ROWS) return;
    const row = jobsView.rows.get(job.job_id);
    // The row's state, not the list's: a stream may have seen the job end since the list.
    if (!row || TERMINAL.has(row.state) || jobsView.streams.has(job.job_id)) continue;
    const done = () => {
      jobsView.streams.delete(job.job_id);
      row.setLive(false);
    };
    const stream = new JobStream(job.job_id, {
      onProgress: (event) => row.setProgress(event.progress),
      onState: (event) => row.setState(event.state),
      onEnd: () => {
        done();
        startLiveRows();
      },
      onError: (error) => {
        done();
        showError(error);
      },
    }, { leads: false });
    jobsView.streams.set(job.job_id, stream.start());
    row.setLive(true);
  }
}

// ---- one job ---------------------------------------------------------------------------

const jobView = {
  jobId: null,
  stream: null,
  leads: [],
  failed: [],
  text: new WeakMap(),
  bar: null,
  renderQueued: false,
};

async function showJob(jobId) {
  $("#jobs-view").hidden = true;
  $("#job-view").hidden = false;
  document.title = `Job ${jobId} · leadflow`;
  Object.assign(jobView, { jobId, leads: [], failed: [], text: new WeakMap() });
  jobView.bar = progressBar("Job progress");
  $("#job-progress-slot").replaceChildren(jobView.bar.node);
  $("#job-id").textContent = jobId;
  $("#job-state").textContent = "";
  $("#search").value = "";
  $("#job-counts").replaceChildren();
  $("#destinations tbody").replaceChildren();
  renderLeads();
  const current = view;
  let job;
  try {
    job = await (await api(jobPath(jobId))).json();
  } catch (error) {
    if (current === view) showError(error);
    return;
  }
  if (current !== view) return;
  renderJob(job);
  for (const part of jobParts) part.show(jobId);
  jobView.stream = new JobStream(jobId, {
    onLead: addLead,
    onProgress: (event) => {
      job = { ...job, progress: event.progress, destinations: event.destinations };
      renderJob(job);
    },
    onState: (event) => {
      job = { ...job, ...event };
      renderJob(job);
      if (event.state === "paused" || job.paused_reason) reloadJob(); // why, and the cap
    },
    // Deliveries (webhook retries) go on after the job ends: show where they stand then.
    onEnd: reloadJob,
    onError: showError,
  }).start();
}

function leaveJob() {
  for (const part of jobParts) part.leave();
  jobView.stream?.stop();
  jobView.stream = null;
  jobView.jobId = null;
}

async function reloadJob() {
  const current = view;
  try {
    const job = await (await api(jobPath(jobView.jobId))).json();
    if (current === view) renderJob(job);
  } catch (error) {
    if (current === view) showError(error);
  }
}

function renderJob(job) {
  stateBadge($("#job-state"), job.state);
  jobView.bar.set(job.progress);
  const p = job.progress;
  const counts = [
    ["Total", p.total ?? "unknown"], ["Done", p.done], ["Enriched", p.enriched],
    ["Failed", p.failed], ["Percent", `${p.percent}%`], ["Priority", job.priority],
    ["Created", timeEl(job.created_at)], ["Started", timeEl(job.started_at)],
    ["Finished", timeEl(job.finished_at)],
  ];
  $("#job-counts").replaceChildren(...counts.map(([term, value]) =>
    el("div", {}, el("dt", {}, term), el("dd", {}, value))));
  const error = $("#job-error");
  error.hidden = !job.error;
  error.textContent = job.error ? `Error: ${job.error}` : "";
  $("#cancel-job").disabled = TERMINAL.has(job.state);
  credits.renderJobCredits($("#job-credits-slot"), job);
  const destinations = job.destinations ?? [];
  $("#destinations tbody").replaceChildren(...(destinations.length
    ? destinations.map((d) => el("tr", {}, cell(d.type), cell(d.name), cell(d.delivered),
      cell(d.failed), cell(d.pending), cell(d.last_error)))
    : [el("tr", {}, el("td", { colSpan: 6, className: "hint" }, "No destinations."))]));
}

function addLead(lead) {
  jobView.leads.push(lead);
  if (lead.status === "failed") jobView.failed.push(lead);
  if (!jobView.renderQueued) {
    // Leads come in pages of hundreds: draw once per frame, not once per lead.
    jobView.renderQueued = true;
    requestAnimationFrame(() => {
      jobView.renderQueued = false;
      renderLeads();
    });
  }
}

function searchText(lead) {
  let text = jobView.text.get(lead);
  if (text === undefined) {
    text = Object.values(lead)
      .filter((value) => typeof value === "string")
      .join("\u0000")
      .toLowerCase();
    jobView.text.set(lead, text);
  }
  return text;
}

function renderLeads() {
  const head = $("#results thead tr");
  if (!head.children.length) {
    head.append(...RESULT_COLUMNS.map((name) => el("th", { scope: "col" }, name.replaceAll("_", " "))));
  }
  const query = $("#search").value.trim().toLowerCase();
  const matching = query ? jobView.leads.filter((lead) => searchText(lead).includes(query)) : jobView.leads;
  const shown = matching.slice(0, MAX_TABLE_ROWS);
  $("#results tbody").replaceChildren(...shown.map((lead) => el("tr", { dataset: { leadId: lead.id } },
    ...RESULT_COLUMNS.map((name) => cell(lead[name])))));
  const total = jobView.leads.length;
  let summary = query ? `${matching.length} of ${total} results match` : `${total} results`;
  if (matching.length > shown.length) summary += `; showing the first ${shown.length}, refine the search to see others`;
  $("#results-count").textContent = summary;

  const failed = jobView.failed.slice(0, MAX_TABLE_ROWS);
  $("#failed-count").textContent = `(${jobView.failed.length})`;
  $("#failed-leads tbody").replaceChildren(...(failed.length
    ? failed.map((lead) => el("tr", { dataset: { leadId: lead.id } }, cell(lead.id),
      cell(lead.full_name), cell(lead.company), cell(lead.error)))
    : [el("tr", {}, el("td", { colSpan: 4, className: "hint" }, "No failed leads."))]));
}

// ---- actions -----------------------------------------------------------------------------

async function cancelJob() {
  const jobId = jobView.jobId;
  if (!jobId || !window.confirm(`Cancel job ${jobId}? Leads not processed yet will be dropped.`)) return;
  clearMessages();
  try {
    await api(`${jobPath(jobId)}/cancel`, { method: "POST" });
    showNotice(`Cancellation of job ${jobId} requested.`);
  } catch (error) {
    showError(new ApiError(error.status, `Cancel failed: ${error.message}`));
  }
}

async function replayDeadLetters() {
  const jobId = jobView.jobId;
  if (!jobId) return;
  clearMessages();
  try {
    const response = await api("/v1/dead-letters/replay", { method: "POST", body: { job_id: jobId } });
    const answer = await response.json().catch(() => ({}));
    const count = typeof answer.replayed === "number" ? ` ${answer.replayed} messages replayed.` : "";
    showNotice(`Replay of dead letters for job ${jobId} requested.${count}`);
  } catch (error) {
    showError(new ApiError(error.status, `Replay failed: ${error.message}`));
  }
}

async function downloadCsv() {
  const jobId = jobView.jobId;
  if (!jobId) return;
  const button = $("#download-csv");
  button.disabled = true;
  try {
    const response = await api(`${jobPath(jobId)}/leads?format=csv`, { accept: "text/csv" });
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `${jobId}.csv`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    // Revoking at once can cancel the download in some browsers.
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    showError(new ApiError(error.status, `Download failed: ${error.message}`));
  } finally {
    button.disabled = false;
  }
}

// ---- key, routing, start -------------------------------------------------------------------

function showKeyState() {
  const stored = sessionStorage.getItem(KEY_STORAGE);
  $("#key-state").textContent = stored === null
    ? "No key set for this tab."
    : stored === "" ? "Using no key (auth off)." : "Key set for this tab.";
}

let newJob = null; // the "New job" page (newjob.js)

function route() {
  view += 1;
  leaveJobs();
  leaveJob();
  newJob.hide();
  clearMessages();
  for (const page of pages) {
    page.leave();
    page.section.hidden = true;
  }
  const page = pages.find((p) => p.pattern.test(location.hash));
  if (page) {
    $("#jobs-view").hidden = true;
    $("#job-view").hidden = true;
    page.section.hidden = false;
    page.show(location.hash.match(page.pattern));
    return;
  }
  const match = location.hash.match(/^#\/jobs\/([^/]+)$/);
  $("#usage-view").hidden = location.hash !== "#/usage";
  if (location.hash === "#/usage") showUsage();
  else if (match) showJob(decodeURIComponent(match[1]));
  else if (location.hash === "#/new") newJob.show();
  else showJobs();
}

function showUsage() {
  $("#jobs-view").hidden = true;
  $("#job-view").hidden = true;
  document.title = "Usage · leadflow";
  const current = view;
  credits.showUsage($("#usage-view"), () => current === view);
}

function start() {
  newJob = newJobPage({ authHeaders: withAuth, clearMessages });
  credits.setup({ api, el, cell, showError, showNotice, reloadJob });
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#api-key");
    sessionStorage.setItem(KEY_STORAGE, input.value.trim());
    input.value = "";
    showKeyState();
    route();
  });
  $("#forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyState();
    route();
  });
  $("#refresh-jobs").addEventListener("click", () => {
    clearMessages();
    refreshJobs();
  });
  $("#search").addEventListener("input", renderLeads);
  $("#cancel-job").addEventListener("click", cancelJob);
  $("#replay-dead").addEventListener("click", replayDeadLetters);
  $("#download-csv").addEventListener("click", downloadCsv);
  window.addEventListener("hashchange", route);
  showKeyState();
  if (sessionStorage.getItem(KEY_STORAGE) === null) $("#api-key").focus();
  route();
}

export { api, ApiError, cell, clearMessages, el, jobPath, showError, showNotice, stateBadge, timeEl };
// After every module script ran, so pages in other files have registered.
document.addEventListener("DOMContentLoaded", start);
