// Schedules page (#/schedules, #/schedules/<id>): the tenant's saved searches, a form to save
// one, each one's runs (newest first, skipped slots with their note), delete.
import {
  api, ApiError, cell, clearMessages, currentView, el, registerPage, showError, showNotice,
  stateBadge, timeEl,
} from "./app.js";

const section = el("section", { id: "schedules-view", hidden: true, "aria-labelledby": "schedules-title" });
document.querySelector("main").append(section);

const schedulePath = (id) => `/v1/schedules/${encodeURIComponent(id)}`;
const when = (s) => (s.every_s ? `every ${s.every_s} s` : `cron ${s.cron} (UTC)`);
const search = (s) => `${s.job.source}: ${Object.values(s.job.query).join(", ")}`;

function field(label, input) {
  return el("label", { className: "field" }, el("span", {}, label), input);
}

function createForm(onCreated) {
  const timing = el("select", { name: "timing", id: "schedule-timing" },
    el("option", { value: "every" }, "At an interval"), el("option", { value: "cron" }, "At cron times (UTC)"));
  const every = el("input", { name: "every_s", id: "schedule-every", type: "number", min: "1", value: "86400" });
  const cron = el("input", { name: "cron", id: "schedule-cron", placeholder: "0 6 * * 1-5" });
  const everyField = field("Seconds", every);
  const cronField = field("Cron", cron);
  cronField.hidden = true;
  timing.addEventListener("change", () => {
    everyField.hidden = timing.value !== "every";
    cronField.hidden = timing.value !== "cron";
  });
  const source = el("input", { name: "source", id: "schedule-source", value: "sandbox", required: true });
  const keywords = el("input", { name: "keywords", id: "schedule-keywords", required: true });
  const geo = el("input", { name: "geo", id: "schedule-geo" });
  const maxLeads = el("input", { name: "max_leads", id: "schedule-max-leads", type: "number", min: "1", value: "100" });
  const enrich = el("input", { name: "enrich", id: "schedule-enrich", type: "checkbox", checked: true });
  const onlyNew = el("input", { name: "only_new", id: "schedule-only-new", type: "checkbox", checked: true });
  const form = el("form", { className: "schedule-form", id: "schedule-form" },
    field("When", timing), everyField, cronField,
    field("Source", source), field("Keywords", keywords), field("Geo", geo),
    field("Max leads", maxLeads), field("Enrich", enrich), field("Only new leads", onlyNew),
    el("button", { type: "submit" }, "Save search"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessages();
    const query = { keywords: keywords.value };
    if (geo.value.trim()) query.geo = geo.value;
    const body = {
      only_new: onlyNew.checked,
      job: { source: source.value, query, max_leads: Number(maxLeads.value), enrich: enrich.checked },
    };
    if (timing.value === "every") body.every_s = Number(every.value);
    else body.cron = cron.value;
    try {
      const created = await (await api("/v1/schedules", { method: "POST", body })).json();
      showNotice(`Saved search ${created.schedule_id}; its first run starts now.`);
      onCreated();
    } catch (error) {
      showError(new ApiError(error.status, `Not saved: ${error.message}`));
    }
  });
  return form;
}

async function remove(schedule, after) {
  if (!window.confirm(`Delete saved search ${schedule.schedule_id}? Its runs' jobs stay.`)) return;
  clearMessages();
  try {
    await api(schedulePath(schedule.schedule_id), { method: "DELETE" });
    showNotice(`Saved search ${schedule.schedule_id} deleted.`);
    after();
  } catch (error) {
    showError(new ApiError(error.status, `Delete failed: ${error.message}`));
  }
}

function runRows(runs) {
  if (!runs.length) return [el("tr", {}, el("td", { colSpan: 4, className: "hint" }, "No runs yet."))];
  return runs.map((run) => {
    const state = el("span");
    stateBadge(state, run.state);
    const job = run.job_id
      ? el("a", { href: `#/jobs/${encodeURIComponent(run.job_id)}` }, el("code", {}, run.job_id))
      : "—";
    return el("tr", { dataset: { jobId: run.job_id ?? "" } },
      el("td", {}, timeEl(run.started_at)), el("td", {}, job), el("td", {}, state), cell(run.note));
  });
}

function table(id, caption, headers, rows) {
  return el("div", { className: "table-wrap" }, el("table", { id },
    el("caption", { className: "visually-hidden" }, caption),
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows)));
}

async function showList() {
  const current = currentView();
  const reload = () => showList();
  let found;
  try {
    found = await (await api("/v1/schedules")).json();
  } catch (error) {
    if (current === currentView()) showError(error);
    return;
  }
  if (current !== currentView()) return;
  const rows = found.schedules.map((s) => {
    const last = el("span");
    if (s.last_run) stateBadge(last, s.last_run.state);
    const del = el("button", { type: "button", className: "delete-schedule" }, "Delete");
    del.addEventListener("click", () => remove(s, reload));
    return el("tr", { dataset: { scheduleId: s.schedule_id } },
      el("td", {}, el("a", { href: `#/schedules/${encodeURIComponent(s.schedule_id)}` }, el("code", {}, s.schedule_id))),
      cell(when(s)), cell(s.only_new ? "yes" : "no"), cell(search(s)), el("td", {}, timeEl(s.next_run_at)),
      el("td", {}, s.last_run ? last : "—"), el("td", {}, del));
  });
  section.replaceChildren(
    el("div", { className: "section-head" }, el("h2", { id: "schedules-title" }, "Saved searches")),
    createForm(reload),
    table("schedules", "Your saved searches, newest first",
      ["Schedule", "When", "Only new", "Search", "Next run", "Last run", ""], rows),
    el("p", { id: "schedules-empty", className: "hint", hidden: rows.length > 0 }, "No saved searches yet."));
}

async function showOne(id) {
  const current = currentView();
  let s;
  try {
    s = await (await api(schedulePath(id))).json();
  } catch (error) {
    if (current === currentView()) showError(error);
    return;
  }
  if (current !== currentView()) return;
  const del = el("button", { type: "button", id: "delete-schedule" }, "Delete");
  del.addEventListener("click", () => remove(s, () => { location.hash = "#/schedules"; }));
  section.replaceChildren(
    el("p", {}, el("a", { href: "#/schedules" }, "← All saved searches")),
    el("div", { className: "section-head" },
      el("h2", { id: "schedules-title" }, "Saved search ", el("code", { id: "schedule-id" }, s.schedule_id))),
    el("dl", { className: "counts" },
      ...[["When", when(s)], ["Only new", s.only_new ? "yes" : "no"], ["Search", search(s)],
        ["Next run", timeEl(s.next_run_at)], ["Created", timeEl(s.created_at)]]
        .map(([term, value]) => el("div", {}, el("dt", {}, term), el("dd", {}, value)))),
    el("div", { className: "actions" }, del),
    el("h3", {}, "Runs (newest first)"),
    table("schedule-runs", "Runs, newest first", ["Started", "Job", "State", "Note"], runRows(s.runs)));
}

let timer = null;

registerPage({
  pattern: /^#\/schedules(?:\/([^/]+))?$/,
  section,
  show(match) {
    const id = match[1] ? decodeURIComponent(match[1]) : null;
    const draw = () => (id ? showOne(id) : showList());
    draw();
    // Runs come on their own: the detail refreshes while it is shown.
    if (id) timer = setInterval(() => { if (!document.hidden) draw(); }, 3000);
  },
  leave() {
    clearInterval(timer);
    timer = null;
  },
});
