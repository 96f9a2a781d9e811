// A small chart on the job page: leads per second over the job's life, from the times its
// outcomes were recorded (GET /v1/jobs/{id}/throughput). Plain SVG; refreshed while the job runs.
import { api, el, jobPath, registerJobPart } from "./app.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 120;
const PAD = 28;
const REFRESH_MS = 2000;
const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);

const figure = el("figure", { id: "throughput", className: "throughput" });
let timer = null;
let shownFor = null;

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function draw(data) {
  const rates = data.leads_per_s;
  const caption = el("figcaption", { id: "throughput-caption" });
  if (!rates.length) {
    caption.textContent = "Throughput: no outcomes yet.";
    figure.replaceChildren(caption);
    return;
  }
  const peak = Math.max(...rates);
  const average = rates.reduce((a, b) => a + b, 0) / rates.length;
  const span = rates.length * data.bucket_s;
  // One bar per bucket: a job done within one bucket still shows.
  const barWidth = (WIDTH - 2 * PAD) / rates.length;
  const height = (rate) => (peak ? rate / peak : 0) * (HEIGHT - 2 * PAD);
  const bars = svg("g", { fill: "currentColor", "fill-opacity": 0.6, "data-buckets": rates.length });
  bars.append(...rates.map((rate, i) => svg("rect", {
    x: (PAD + i * barWidth).toFixed(1), y: (HEIGHT - PAD - height(rate)).toFixed(1),
    width: Math.max(barWidth - 1, 1).toFixed(1), height: height(rate).toFixed(1),
  }, null)));
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", width: "100%",
    "aria-label": `Leads per second over ${span} s: peak ${peak.toFixed(1)}, average ${average.toFixed(1)}`,
  });
  chart.append(
    svg("line", { x1: PAD, y1: HEIGHT - PAD, x2: WIDTH - PAD, y2: HEIGHT - PAD, stroke: "currentColor", "stroke-opacity": 0.3 }),
    bars,
    svg("text", { x: PAD, y: PAD - 10, "font-size": 11, fill: "currentColor" }, `${peak.toFixed(1)}/s`),
    svg("text", { x: PAD, y: HEIGHT - 8, "font-size": 11, fill: "currentColor" }, "0 s"),
    svg("text", { x: WIDTH - PAD, y: HEIGHT - 8, "font-size": 11, fill: "currentColor", "text-anchor": "end" }, `${span} s`),
  );
  caption.textContent = `Throughput: leads per second (${data.bucket_s} s buckets), peak ${peak.toFixed(1)}, average ${average.toFixed(1)}.`;
  figure.replaceChildren(chart, caption);
}

async function refresh(jobId) {
  try {
    const [data, job] = await Promise.all([
      api(`${jobPath(jobId)}/throughput`).then((r) => r.json()),
      api(jobPath(jobId)).then((r) => r.json()),
    ]);
    if (shownFor !== jobId) return;
    draw(data);
    if (TERMINAL.has(job.state)) {
      clearInterval(timer);
      timer = null;
    }
  } catch {
    // The job page shows the job's own errors; the chart just stays as it was.
  }
}

registerJobPart({
  show(jobId) {
    shownFor = jobId;
    document.querySelector("#job-counts").after(figure);
    figure.replaceChildren();
    refresh(jobId);
    timer = setInterval(() => { if (!document.hidden) refresh(jobId); }, REFRESH_MS);
  },
  leave() {
    shownFor = null;
    clearInterval(timer);
    timer = null;
    figure.remove();
  },
});
