// Dead letters page (#/dead-letters, #/dead-letters/<job id>): messages that exhausted their
// attempts, filtered by job and state, paged; replay the selected ones or all of a job's.
import {
  api, ApiError, cell, clearMessages, currentView, el, registerPage, showError, showNotice, timeEl,
} from "./app.js";

const section = el("section", { id: "dead-letters-view", hidden: true, "aria-labelledby": "dead-letters-title" });
document.querySelector("main").append(section);

const jobFilter = el("input", { id: "dead-letters-job", type: "search", placeholder: "job id", autocomplete: "off" });
const stateFilter = el("select", { id: "dead-letters-state" },
  el("option", { value: "parked" }, "Parked"), el("option", { value: "replayed" }, "Replayed"),
  el("option", { value: "" }, "All"));
const body = el("tbody");
const more = el("button", { type: "button", id: "dead-letters-more", hidden: true }, "Load more");
const replaySelected = el("button", { type: "button", id: "replay-selected" }, "Replay selected");
const replayJob = el("button", { type: "button", id: "replay-job" }, "Replay all of this job");
const empty = el("p", { id: "dead-letters-empty", className: "hint", hidden: true }, "No dead letters match.");
const filters = el("form", { className: "filters", id: "dead-letters-filters" },
  el("label", { htmlFor: "dead-letters-job" }, "Job"), jobFilter,
  el("label", { htmlFor: "dead-letters-state" }, "State"), stateFilter,
  el("button", { type: "submit" }, "Filter"));

section.append(
  el("div", { className: "section-head" }, el("h2", { id: "dead-letters-title" }, "Dead letters")),
  el("p", { className: "hint" }, "Messages that used up their attempts. Replaying sends them back to work with fresh attempts; leads recorded as failed are upgraded when they succeed."),
  filters,
  el("div", { className: "actions" }, replaySelected, replayJob),
  el("div", { className: "table-wrap" }, el("table", { id: "dead-letters" },
    el("caption", { className: "visually-hidden" }, "Dead letters, oldest first"),
    el("thead", {}, el("tr", {}, ...["", "Id", "Job", "Type", "Leads", "Error", "Attempts", "Dead at", "State"]
      .map((h) => el("th", { scope: "col" }, h)))),
    body)),
  empty, more);

let cursor = null;

function row(letter) {
  const pick = el("input", { type: "checkbox", value: String(letter.id), disabled: letter.state !== "parked",
    "aria-label": `Select dead letter ${letter.id}` });
  const job = letter.job_id
    ? el("a", { href: `#/jobs/${encodeURIComponent(letter.job_id)}` }, el("code", {}, letter.job_id))
    : "—";
  return el("tr", { dataset: { deadLetterId: String(letter.id) } },
    el("td", {}, pick), cell(letter.id), el("td", {}, job), cell(letter.message_type),
    cell(letter.lead_ids.length), cell(letter.error), cell(letter.attempts),
    el("td", {}, timeEl(letter.dead_at)), cell(letter.state));
}

async function load(append) {
  const current = currentView();
  const query = new URLSearchParams({ limit: "100" });
  if (jobFilter.value.trim()) query.set("job_id", jobFilter.value.trim());
  if (stateFilter.value) query.set("state", stateFilter.value);
  if (append && cursor) query.set("cursor", cursor);
  let page;
  try {
    page = await (await api(`/v1/dead-letters?${query}`)).json();
  } catch (error) {
    if (current === currentView()) showError(error);
    return;
  }
  if (current !== currentView()) return;
  const rows = page.dead_letters.map(row);
  if (append) body.append(...rows);
  else body.replaceChildren(...rows);
  cursor = page.next_cursor;
  more.hidden = cursor === null;
  empty.hidden = body.children.length > 0;
  replayJob.disabled = !jobFilter.value.trim();
}

async function replay(request, what) {
  clearMessages();
  try {
    const answer = await (await api("/v1/dead-letters/replay", { method: "POST", body: request })).json();
    const skipped = answer.skipped.length ? `; ${answer.skipped.length} skipped` : "";
    showNotice(`Replayed ${answer.replayed.length} dead letters of ${what}${skipped}.`);
    await load(false);
  } catch (error) {
    showError(new ApiError(error.status, `Replay failed: ${error.message}`));
  }
}

filters.addEventListener("submit", (event) => {
  event.preventDefault();
  const job = jobFilter.value.trim();
  const target = job ? `#/dead-letters/${encodeURIComponent(job)}` : "#/dead-letters";
  if (location.hash === target) load(false);
  else location.hash = target;
});
more.addEventListener("click", () => load(true));
replaySelected.addEventListener("click", () => {
  const ids = [...body.querySelectorAll("input[type=checkbox]:checked")].map((box) => Number(box.value));
  if (!ids.length) {
    showError(new Error("Select the dead letters to replay first."));
    return;
  }
  replay({ ids }, "the selection");
});
replayJob.addEventListener("click", () => {
  const job = jobFilter.value.trim();
  if (job) replay({ job_id: job }, `job ${job}`);
});

registerPage({
  pattern: /^#\/dead-letters(?:\/([^/]+))?$/,
  section,
  show(match) {
    jobFilter.value = match[1] ? decodeURIComponent(match[1]) : "";
    cursor = null;
    load(false);
  },
  leave() {},
});
