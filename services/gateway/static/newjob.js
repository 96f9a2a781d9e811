// "New job" page (#/new): a lead file (CSV with a header row, or NDJSON) with the job's
// destinations and options, uploaded as multipart/form-data (part `job`, then part `leads`).
// The browser streams the file from disk, so a file of a million rows uploads like a small
// one; XMLHttpRequest rather than fetch() because only it reports upload progress. The 202
// opens the job's page; a refused file lists its bad lines (line, field, message).

const UPLOAD_TYPES = { ndjson: "application/x-ndjson", jsonl: "application/x-ndjson" };
const $ = (selector) => document.querySelector(selector);

// `app`: what the page shares with app.js (auth headers, messages, navigation).
export function newJobPage(app) {
  const form = $("#new-job-form");
  const bar = $("#upload-progress");
  const status = $("#upload-status");
  const errors = $("#upload-errors");
  let request = null;

  function show() {
    $("#jobs-view").hidden = true;
    $("#job-view").hidden = true;
    $("#new-job-view").hidden = false;
    document.title = "New job · leadflow";
  }

  function hide() {
    $("#new-job-view").hidden = true;
  }

  function jobPart() {
    const data = new FormData(form);
    const destinations = [];
    const csvName = String(data.get("csv") ?? "").trim();
    if (csvName) destinations.push({ type: "csv", name: csvName });
    const webhook = String(data.get("webhook") ?? "").trim();
    if (webhook) {
      const secret = String(data.get("webhook_secret") ?? "");
      destinations.push(secret ? { type: "webhook", url: webhook, secret } : { type: "webhook", url: webhook });
    }
    if (data.get("dashboard")) destinations.push({ type: "dashboard" });
    const job = { destinations, priority: String(data.get("priority") || "normal") };
    const timeout = Number(data.get("timeout_s"));
    if (timeout > 0) job.timeout_s = Math.round(timeout);
    return job;
  }

  function leadsPart(file) {
    const extension = file.name.split(".").pop().toLowerCase();
    // Wrapping a File in a Blob reads nothing: the browser still sends it from disk.
    return new Blob([file], { type: UPLOAD_TYPES[extension] ?? "text/csv" });
  }

  function showProblem(problem, httpStatus) {
    status.textContent = `${problem.detail ?? "The upload was refused"} (HTTP ${httpStatus})`;
    errors.replaceChildren(...(problem.errors ?? []).map((error) => {
      const item = document.createElement("li");
      item.textContent = error.line === undefined
        ? `${error.field}: ${error.message}`
        : `Line ${error.line}, ${error.field}: ${error.message}`;
      return item;
    }));
    errors.hidden = errors.childElementCount === 0;
  }

  function submit(event) {
    event.preventDefault();
    app.clearMessages();
    const file = $("#lead-file").files[0];
    if (!file) {
      status.textContent = "Choose a lead file first.";
      return;
    }
    const body = new FormData();
    body.append("job", new Blob([JSON.stringify(jobPart())], { type: "application/json" }));
    body.append("leads", leadsPart(file), file.name);
    errors.hidden = true;
    bar.value = 0;
    bar.hidden = false;
    form.querySelector("button[type=submit]").disabled = true;
    status.textContent = `Uploading ${file.name}…`;

    request = new XMLHttpRequest();
    request.open("POST", "/v1/jobs/enrich");
    for (const [name, value] of Object.entries(app.authHeaders({ Accept: "application/json" }))) {
      request.setRequestHeader(name, value);
    }
    request.upload.onprogress = (progress) => {
      if (!progress.lengthComputable) return;
      bar.value = Math.round((100 * progress.loaded) / progress.total);
      bar.setAttribute("aria-valuenow", String(bar.value));
    };
    request.upload.onload = () => {
      status.textContent = `Uploaded ${file.name}; queuing its leads…`;
    };
    request.onload = () => {
      form.querySelector("button[type=submit]").disabled = false;
      let answer = {};
      try {
        answer = JSON.parse(request.responseText);
      } catch {
        // not JSON: the status says enough
      }
      if (request.status === 202) {
        status.textContent = "";
        bar.hidden = true;
        form.reset();
        location.hash = `#/jobs/${encodeURIComponent(answer.job_id)}`;
      } else {
        showProblem(answer, request.status);
      }
    };
    request.onerror = () => {
      form.querySelector("button[type=submit]").disabled = false;
      status.textContent = "The upload failed: the gateway is unreachable.";
    };
    request.send(body);
  }

  form.addEventListener("submit", submit);
  return { show, hide };
}
