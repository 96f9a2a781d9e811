// leadflow dashboard, credits: the Usage page (credits per provider per day, each provider's
// hit rate and credits per email found, from GET /v1/usage) and a job's credits with the
// Resume button of a job paused by a budget (POST /v1/jobs/{id}/resume).
// app.js hands over its helpers once (`setup`), routes `#/usage` here, and calls
// `renderJobCredits` whenever it draws a job.

const USAGE_DAYS = 30;
const helpers = {};

export function setup({ api, el, cell, showError, showNotice, reloadJob }) {
  Object.assign(helpers, { api, el, cell, showError, showNotice, reloadJob });
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function fixed(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}

// ---- the Usage page ------------------------------------------------------------------------

export async function showUsage(section, isCurrent) {
  const { api, el, cell, showError } = helpers;
  const to = new Date();
  const from = new Date(to.getTime() - (USAGE_DAYS - 1) * 86_400_000);
  section.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← All jobs")),
    el("h2", { id: "usage-title" }, "Usage"),
    el("p", { className: "hint" }, `Provider credits, the last ${USAGE_DAYS} days (UTC).`),
  );
  let usage;
  try {
    usage = await (await api(`/v1/usage?from=${isoDay(from)}&to=${isoDay(to)}`)).json();
  } catch (error) {
    if (isCurrent()) showError(error);
    return;
  }
  if (!isCurrent()) return;
  const providers = [...new Set([
    ...Object.keys(usage.credits ?? {}), ...Object.keys(usage.providers ?? {}),
  ])].sort();
  const byDay = el("table", { id: "usage-credits" },
    el("caption", {}, "Credits per provider per day"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Day"),
      ...providers.map((p) => el("th", { scope: "col" }, p)), el("th", { scope: "col" }, "Total"))),
    el("tbody", {}, ...usage.days.map((day) => el("tr", {}, cell(day.day),
      ...providers.map((p) => cell(day.credits?.[p] ?? 0)),
      cell(Object.values(day.credits ?? {}).reduce((a, b) => a + b, 0)))),
    el("tr", { className: "total" }, el("th", { scope: "row" }, "Total"),
      ...providers.map((p) => cell(usage.credits?.[p] ?? 0)),
      cell(Object.values(usage.credits ?? {}).reduce((a, b) => a + b, 0)))));
  const rates = el("table", { id: "usage-providers" },
    el("caption", {}, "Providers"),
    el("thead", {}, el("tr", {}, ...["Provider", "Leads asked", "Found", "Hit rate",
      "Emails", "Credits", "Credits per email"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...providers.map((p) => {
      const s = usage.providers?.[p] ?? {};
      return el("tr", { dataset: { provider: p } }, cell(p), cell(s.leads ?? 0), cell(s.found ?? 0),
        cell(typeof s.hit_rate === "number" ? `${(100 * s.hit_rate).toFixed(1)}%` : "–"),
        cell(s.emails ?? 0), cell(s.credits ?? 0), cell(fixed(s.credits_per_email, 2)));
    })));
  section.append(
    el("div", { className: "table-wrap" }, byDay),
    el("div", { className: "table-wrap" }, rates),
  );
  if (!providers.length) section.append(el("p", { className: "hint" }, "No paid calls yet."));
}

// ---- a job's credits -------------------------------------------------------------------------

export function renderJobCredits(slot, job) {
  const { el } = helpers;
  const spent = job.progress?.credits ?? 0;
  const cap = job.max_credits ?? null;
  const byProvider = Object.entries(job.credits_by_provider ?? {})
    .map(([p, n]) => `${p} ${n}`).join(", ");
  const children = [
    el("p", { id: "job-credits" }, `Credits: ${spent}`, cap === null ? "" : ` of ${cap}`,
      byProvider ? ` (${byProvider})` : ""),
  ];
  if (job.state === "paused") {
    const reason = job.paused_reason === "tenant_budget"
      ? "the tenant's daily credit budget is spent" : "the job's credit budget is reached";
    const input = el("input", {
      id: "resume-cap", type: "number", min: "0", step: "1",
      value: String(Math.max(spent, cap ?? 0) * 2 || 100),
    });
    const button = el("button", { type: "button", id: "resume-job" }, "Resume");
    button.addEventListener("click", () => resumeJob(job.job_id, input, button));
    children.push(el("p", { id: "job-paused", className: "message message-info" },
      `Paused: ${reason}.`),
    el("div", { className: "actions" }, el("label", { htmlFor: "resume-cap" }, "New cap"), input, button));
  }
  slot.replaceChildren(...children);
}

async function resumeJob(jobId, input, button) {
  const { api, showError, showNotice, reloadJob } = helpers;
  const raw = input.value.trim();
  const body = raw === "" ? {} : { max_credits: Number(raw) };
  button.disabled = true;
  try {
    await api(`/v1/jobs/${encodeURIComponent(jobId)}/resume`, { method: "POST", body });
    showNotice(`Job ${jobId} resumed.`);
    await reloadJob();
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}
